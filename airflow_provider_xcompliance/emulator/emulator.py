"""``XComplianceEmulator``: start, stop and inspect a local emulator of X's batch compliance API.

The emulator is a real HTTP server on loopback that behaves like ``api.x.com`` plus X's
signed Google Cloud Storage URLs, so that a client which works against it works against X:
same shapes, errors, limits and lifecycle, and the same traps. It uses only the standard
library.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

from .faults import PROFILES, Fault
from .rules import JOB_TYPES, GroundTruthSpec, rules_for
from .server import EmulatorHTTPServer
from .signing import UrlSigner
from .state import ACTIVE_MODES, API_ENDPOINTS, UNKNOWN_JOB_STATUSES, Config, EmulatorState

__all__ = ["XComplianceEmulator"]


def _rate_limits(rate_limit: int | Mapping[str, int]) -> dict[str, int]:
    if isinstance(rate_limit, Mapping):
        unknown = set(rate_limit) - set(API_ENDPOINTS)
        if unknown:
            raise ValueError(f"rate_limit keys must be among {API_ENDPOINTS}: {sorted(unknown)}")
        limits = dict.fromkeys(API_ENDPOINTS, 150)
        limits.update(rate_limit)
    else:
        limits = dict.fromkeys(API_ENDPOINTS, rate_limit)
    for endpoint, limit in limits.items():
        if not isinstance(limit, int) or limit < 0:
            raise ValueError(f"rate limit of {endpoint} must be a non-negative integer")
    return limits


class XComplianceEmulator:
    """A local X batch compliance API (API endpoints and signed storage URLs).

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Durations are in
    emulated seconds; ``speed`` makes all of them elapse that many times faster, while every
    timestamp and header stays in real wall-clock time (clients need not know ``speed``).

    Options beyond the obvious ones:

    ``estimated_completion`` (default False)
        Pre-release API mode: in_progress jobs carry ``estimated_completion``. The released
        API never sends it.
    ``gzip`` (default True)
        Gzip API answers for clients that accept it.
    ``session_window_seconds`` (default 604800)
        Lifetime of a resumable upload session from its start POST.
    ``sessions_outlive_upload_window`` (default True)
        Only the start POST must fall inside the upload window; chunks to the session URL keep
        working for the session's lifetime. False: the upload window bounds the chunks too.
    ``unknown_job_status`` (default 200)
        ``GET /2/compliance/jobs/:id`` of an unknown id: 200 with an ``errors`` array and no
        ``data`` (X's spec), or 404.
    ``usage_capped`` (default False)
        Every API request with a valid token answers 429 ``usage-capped``; also settable on the
        running emulator (:attr:`usage_capped`).
    ``fault_profile`` (default ``"none"``)
        ``"all"``: the recurring, deterministic fault schedule described in ``faults``.
    ``pickup_seconds`` (default 0)
        Emulated seconds a job stays ``created`` after a complete upload (a second simple PUT
        meanwhile replaces the submission) before it turns ``in_progress``.
    ``gzip_results`` (default True)
        Store results gzip-compressed and serve them with decompressive transcoding; False
        stores and serves them uncompressed.
    """

    def __init__(
        self,
        token: str = "emulator-token",
        host: str = "127.0.0.1",
        port: int = 0,
        data_dir: str | os.PathLike | None = None,
        speed: float = 1.0,
        processing_seconds: float = 30.0,
        one_active_job: str = "per_type",
        rate_limit: int | Mapping[str, int] = 150,
        rate_window_seconds: float = 900.0,
        upload_window_seconds: float = 900.0,
        download_window_seconds: float = 604800.0,
        ground_truth: GroundTruthSpec = None,
        estimated_completion: bool = False,
        gzip: bool = True,
        *,
        session_window_seconds: float = 604800.0,
        sessions_outlive_upload_window: bool = True,
        public_host: str | None = None,
        unknown_job_status: int = 200,
        usage_capped: bool = False,
        fault_profile: str = "none",
        pickup_seconds: float = 0.0,
        gzip_results: bool = True,
    ):
        if not token:
            raise ValueError("token must not be empty")
        if not speed > 0:
            raise ValueError("speed must be positive")
        if one_active_job not in ACTIVE_MODES:
            raise ValueError(f"one_active_job must be one of {ACTIVE_MODES}")
        if unknown_job_status not in UNKNOWN_JOB_STATUSES:
            raise ValueError(f"unknown_job_status must be one of {UNKNOWN_JOB_STATUSES}")
        if fault_profile not in PROFILES:
            raise ValueError(f"fault_profile must be one of {PROFILES}")
        for name, value in (
            ("processing_seconds", processing_seconds),
            ("pickup_seconds", pickup_seconds),
            ("rate_window_seconds", rate_window_seconds),
            ("upload_window_seconds", upload_window_seconds),
            ("download_window_seconds", download_window_seconds),
            ("session_window_seconds", session_window_seconds),
        ):
            if value < 0 or (value == 0 and name not in ("processing_seconds", "pickup_seconds")):
                raise ValueError(f"{name} must be positive")
        if isinstance(ground_truth, Mapping) and set(ground_truth) - set(JOB_TYPES):
            raise ValueError(f"ground_truth keys must be among {JOB_TYPES}")
        self._config = Config(
            token=token,
            speed=float(speed),
            processing_seconds=float(processing_seconds),
            one_active_job=one_active_job,
            rate_limits=_rate_limits(rate_limit),
            rate_window_seconds=float(rate_window_seconds),
            upload_window_seconds=float(upload_window_seconds),
            download_window_seconds=float(download_window_seconds),
            session_window_seconds=float(session_window_seconds),
            estimated_completion=bool(estimated_completion),
            gzip=bool(gzip),
            sessions_outlive_upload_window=bool(sessions_outlive_upload_window),
            unknown_job_status=int(unknown_job_status),
            usage_capped=bool(usage_capped),
            fault_profile=fault_profile,
            pickup_seconds=float(pickup_seconds),
            gzip_results=bool(gzip_results),
        )
        self._host = host
        self._port = port
        self._data_dir_arg = data_dir
        self._ground_truth = ground_truth
        self._public_host = public_host
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
            rules = {t: rules_for(t, self._ground_truth) for t in JOB_TYPES}
            if self._data_dir_arg is None:
                self._temp_dir = tempfile.mkdtemp(prefix="xcompliance-emulator-")
                data_dir = Path(self._temp_dir)
            else:
                data_dir = Path(self._data_dir_arg)
                data_dir.mkdir(parents=True, exist_ok=True)
            state = EmulatorState(self._config, data_dir, rules)
            try:
                server = EmulatorHTTPServer((self._host, self._port), state)
            except BaseException:
                self._remove_temp_dir()
                raise
            port = server.server_address[1]
            host = self._host
            if host in ("", "0.0.0.0"):
                host = "127.0.0.1"
            elif host == "::":
                host = "::1"
            if ":" in host:
                host = f"[{host}]"
            public = self._public_host or f"{host}:{port}"
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
            if server is None:
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
