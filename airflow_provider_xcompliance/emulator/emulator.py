"""``XComplianceEmulator``: start, stop and inspect a local emulator of X's batch compliance API.

The emulator is a real HTTP server on loopback that behaves like ``api.x.com`` plus X's
signed Google Cloud Storage URLs, so that a client which works against it works against X:
same shapes, errors, limits and lifecycle, and the same traps. It uses only the standard
library.
"""

from __future__ import annotations

import inspect
import secrets
import shutil
import tempfile
import threading
from dataclasses import fields
from pathlib import Path
from typing import Any

from .config import Config
from .faults import Fault
from .rules import JOB_TYPES, rules_for
from .server import EmulatorHTTPServer
from .signing import UrlSigner
from .state import EmulatorState

__all__ = ["XComplianceEmulator"]

OPTIONS = frozenset(option.name for option in fields(Config))


class XComplianceEmulator:
    """A local X batch compliance API (API endpoints and signed storage URLs).

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Durations are in
    emulated seconds; ``speed`` makes all of them elapse that many times faster, while every
    timestamp and header stays in real wall-clock time (clients need not know ``speed``).

    The options are keyword arguments, the fields of :class:`~.config.Config`: each is defined
    there once, with its default and its command-line flag (``help()`` and
    ``inspect.signature`` show them all with their defaults). Beyond the obvious ones:

    ``estimated_completion``
        Pre-release API mode: in_progress jobs carry ``estimated_completion``. The released
        API never sends it.
    ``gzip``
        Gzip API answers for clients that accept it.
    ``session_window_seconds``
        Lifetime of a resumable upload session from its start POST.
    ``sessions_outlive_upload_window``
        Only the start POST must fall inside the upload window; chunks to the session URL keep
        working for the session's lifetime. False: the upload window bounds the chunks too.
    ``unknown_job_status``
        ``GET /2/compliance/jobs/:id`` of an unknown id: 200 with an ``errors`` array and no
        ``data`` (X's spec), or 404.
    ``usage_capped``
        Every API request with a valid token answers 429 ``usage-capped``; also settable on the
        running emulator (:attr:`usage_capped`).
    ``fault_profile``
        ``"all"``: the recurring, deterministic fault schedule described in ``faults``.
    ``pickup_seconds``
        Emulated seconds a job stays ``created`` after a complete upload (a second simple PUT
        meanwhile replaces the submission) before it turns ``in_progress``.
    ``gzip_results``
        Store results gzip-compressed and serve them with decompressive transcoding; False
        stores and serves them uncompressed.
    """

    # What help(), inspect.signature and Sphinx show instead of ``**options``: the options,
    # keyword-only, with their defaults.
    __signature__ = inspect.signature(Config).replace(return_annotation=inspect.Signature.empty)

    def __init__(self, **options: Any) -> None:
        unknown = sorted(options.keys() - OPTIONS)
        if unknown:
            raise TypeError(f"XComplianceEmulator() got unexpected keyword arguments: {', '.join(unknown)}")
        self._config = Config(**options)
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._state: EmulatorState | None = None
        self._temp_dir: str | None = None
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> XComplianceEmulator:
        """Bind, load the ground truth, and serve in a background thread."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError("the emulator is already running")
            cfg = self._config
            rules = {t: rules_for(t, cfg.ground_truth) for t in JOB_TYPES}
            if cfg.data_dir is None:
                self._temp_dir = tempfile.mkdtemp(prefix="xcompliance-emulator-")
                data_dir = Path(self._temp_dir)
            else:
                data_dir = Path(cfg.data_dir)
                data_dir.mkdir(parents=True, exist_ok=True)
            state = EmulatorState(cfg, data_dir, rules)
            try:
                server = EmulatorHTTPServer((cfg.host, cfg.port), state)
            except BaseException:
                self._remove_temp_dir()
                raise
            port = server.server_address[1]
            host = cfg.host
            if host in ("", "0.0.0.0"):
                host = "127.0.0.1"
            elif host == "::":
                host = "::1"
            if ":" in host:
                host = f"[{host}]"
            public = cfg.public_host or f"{host}:{port}"
            state.bind(UrlSigner(secrets.token_bytes(32), public), f"http://{public}")
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"xcompliance-emulator-{port}",
                daemon=True,
            )
            thread.start()
            self._server, self._thread, self._state = server, thread, state
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections, stop processing, remove the temporary data dir."""
        with self._lock:
            server, thread, state = self._server, self._thread, self._state
            if server is None or thread is None or state is None:  # not running (all set together)
                return
            self._server = self._thread = None
        server.shutdown()
        server.close_all_connections()
        server.server_close()
        thread.join(10)
        state.shutdown()
        self._remove_temp_dir()

    def _remove_temp_dir(self) -> None:
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def __enter__(self) -> XComplianceEmulator:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    def _require_state(self) -> EmulatorState:
        if self._state is None:
            raise RuntimeError("the emulator has not been started")
        return self._state

    # -- addresses and settings --------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return self._require_state().base_url

    @property
    def port(self) -> int:
        return int(self._require_state().base_url.rsplit(":", 1)[1])

    @property
    def token(self) -> str:
        return self._config.token

    @property
    def config(self) -> Config:
        return self._config

    @property
    def data_dir(self) -> Path:
        return self._require_state().data_dir

    # -- faults ------------------------------------------------------------------------------

    def inject_fault(
        self,
        endpoint: str,
        kind: str,
        *,
        status: int | None = None,
        seconds: float | None = None,
        times: int = 1,
        after_bytes: int | None = None,
        reset_seconds: float = 1.0,
        skip: int = 0,
    ) -> Fault:
        """Make the next ``times`` requests to ``endpoint`` fail (see ``faults`` module). Kinds:
        ``status``, ``drop``, ``delay``, ``usage_cap`` (API endpoints), ``partial_chunk`` and
        ``lose_final_answer`` (``upload_session``), ``no_such_key`` (``download``). The first
        ``skip`` matching requests go through untouched."""
        return self._require_state().faults.add(
            endpoint,
            kind,
            status=status,
            seconds=seconds,
            times=times,
            after_bytes=after_bytes,
            reset_seconds=reset_seconds,
            skip=skip,
        )

    @property
    def usage_capped(self) -> bool:
        """Whether API requests answer 429 ``usage-capped`` (settable while running)."""
        if self._state is None:
            return self._config.usage_capped
        return self._state.usage_capped

    @usage_capped.setter
    def usage_capped(self, value: bool) -> None:
        self._require_state().usage_capped = bool(value)

    @property
    def fault_profile(self) -> str:
        return self._config.fault_profile

    def clear_faults(self) -> None:
        self._require_state().faults.clear()

    def pending_faults(self) -> list[Fault]:
        return self._require_state().faults.pending()

    # -- inspection ------------------------------------------------------------------------

    def jobs(self) -> list[dict]:
        """Every job as the API would show it now (both types, newest first)."""
        state = self._require_state()
        now = state.now()
        return [state.view(job, now) for job in state.all_jobs(now)]

    def job(self, job_id: str) -> dict | None:
        state = self._require_state()
        now = state.now()
        job = state.find(str(job_id), now)
        return None if job is None else state.view(job, now)

    @property
    def request_log(self) -> list[tuple[str, str, int]]:
        """(method, endpoint name, HTTP status) per request; status 0 = closed unanswered."""
        state = self._require_state()
        with state.lock:
            return list(state.request_log)

    def clear_request_log(self) -> None:
        state = self._require_state()
        with state.lock:
            state.request_log.clear()

    def submission_path(self, job_id: str) -> Path:
        return self._require_state().submission_path(str(job_id))

    def results_path(self, job_id: str) -> Path:
        """The job's results, decompressed (JSON Lines)."""
        return self._require_state().results_path(str(job_id))

    def stored_results_path(self, job_id: str) -> Path:
        """The results object as stored (gzip unless empty or ``gzip_results=False``); only
        meaningful once the job is complete."""
        state = self._require_state()
        job = state.jobs.get(str(job_id))
        if job is not None and job.stored is not None:
            return job.stored.path
        return state.stored_results_path(str(job_id))

    def wait_processed(self, job_id: str, timeout: float = 30.0) -> bool:
        """Wait until the job's upload has been processed (results or error ready)."""
        return self._require_state().wait_processed(str(job_id), timeout)

    def __repr__(self) -> str:
        where = self._state.base_url if self._state is not None and self.running else "stopped"
        return f"<XComplianceEmulator {where}>"
