"""The emulator's shared state: jobs and their lifecycle, and the processing of their uploads.

Everything here is guarded by one lock, because the HTTP server answers each connection on its
own thread. Job status is never stored: it is computed from the clock whenever a job is shown
(``created`` -> ``expired`` when the upload window passes with no completed upload; a completed
upload stays ``created`` for ``pickup_seconds`` (default 0) -- a second upload then replaces
it -- then ``in_progress`` -> ``complete`` or ``failed`` once ``processing_seconds`` more have
passed and the result file is written), so no timer threads are needed and a fast clock
(``speed``) only shortens the durations.

Results are stored like X's delivery objects: gzip-compressed (``Content-Encoding: gzip``
metadata) unless ``gzip_results=False``; an empty result is an empty, uncompressed object.
Times are real Unix seconds at full precision; only the answers round them to the second.

``EmulatorState`` is built on ``objects`` (the names, signed URLs and files of a job's objects)
and ``sessions`` (resumable upload sessions); its records are in ``jobs``, its rate limiter in
``rate_limits``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import secrets
import threading
import time
import zlib
from collections.abc import Mapping
from pathlib import Path

from .config import ACTIVE_MODES, API_ENDPOINTS, UNKNOWN_JOB_STATUSES, Config
from .faults import ALL_PROFILE_NO_SUCH_KEY, FaultInjector
from .jobs import Job, StoredObject
from .objects import JobObjects
from .rate_limits import RateLimiter
from .rules import TWEPOCH_MS, ProcessingCancelled, ProcessOutcome, ResultRules, process_file
from .sessions import Session, UploadSessions
from .signing import UrlSigner
from .timefmt import iso_z

# ACTIVE_MODES, API_ENDPOINTS, UNKNOWN_JOB_STATUSES and Config are config's, importable here too.
__all__ = [
    "ACTIVE_MODES",
    "API_ENDPOINTS",
    "UNKNOWN_JOB_STATUSES",
    "Config",
    "EmulatorState",
]

logger = logging.getLogger("airflow_provider_xcompliance.emulator")


class _Either:
    """Set when either event is set (what ``process_file`` polls)."""

    def __init__(self, a: threading.Event, b: threading.Event):
        self._a, self._b = a, b

    def is_set(self) -> bool:
        return self._a.is_set() or self._b.is_set()


class EmulatorState(UploadSessions, JobObjects):
    """Jobs, sessions, counters, faults and the request log of one running emulator."""

    def __init__(self, config: Config, data_dir: Path, rules: Mapping[str, ResultRules]):
        self.config = config
        self.data_dir = data_dir
        self.rules = dict(rules)
        self.lock = threading.RLock()
        self.jobs: dict[str, Job] = {}
        self.sessions: dict[str, Session] = {}
        self.rate = RateLimiter(config.rate_limits, config.real(config.rate_window_seconds))
        self.faults = FaultInjector(config.fault_profile)
        self.usage_capped = config.usage_capped
        self.request_log: list[tuple[str, str, int]] = []
        self.signer: UrlSigner | None = None
        self.base_url = ""
        # The number before the underscore in X's object names; constant per app at X.
        self.app_id = str(secrets.randbelow(8 * 10**18) + 10**18)
        self._worker_bits = secrets.randbelow(1024) << 12
        self._last_id = 0
        self._cancel = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- clock and bookkeeping -------------------------------------------------------------

    @staticmethod
    def now() -> float:
        return time.time()

    def bind(self, signer: UrlSigner, base_url: str) -> None:
        self.signer = signer
        self.base_url = base_url

    def record(self, method: str, endpoint: str, status: int) -> None:
        """Access log: method, endpoint name and status only (never URLs or headers: signed
        URLs and bearer tokens are credentials)."""
        with self.lock:
            self.request_log.append((method, endpoint, status))
        logger.info("%s %s %s", method, endpoint, status or "dropped")

    # -- jobs -----------------------------------------------------------------------------

    def _next_id(self, now: float) -> str:
        job_id = ((int(now * 1000) - TWEPOCH_MS) << 22) | self._worker_bits
        if job_id <= self._last_id:
            job_id = self._last_id + 1
        self._last_id = job_id
        return str(job_id)

    def status(self, job: Job, now: float) -> str:
        cfg = self.config
        if job.uploaded_at is None:
            deadline = job.upload_deadline
            if cfg.sessions_outlive_upload_window and job.session_deadline is not None:
                deadline = max(deadline, job.session_deadline)
            return "created" if now < deadline else "expired"
        picked_up = job.uploaded_at + cfg.real(cfg.pickup_seconds)
        if now < picked_up:
            return "created"
        if job.processed and now >= picked_up + cfg.real(cfg.processing_seconds):
            assert job.outcome is not None  # set with processed
            return "failed" if job.outcome.error else "complete"
        return "in_progress"

    def completion_eta(self, job: Job) -> float:
        assert job.uploaded_at is not None, "only an uploaded job has a completion time"
        cfg = self.config
        return job.uploaded_at + cfg.real(cfg.pickup_seconds + cfg.processing_seconds)

    def visible(self, job: Job, now: float) -> bool:
        """Jobs drop out of the API once their download window has passed."""
        return now < job.download_deadline

    def find(self, job_id: str, now: float) -> Job | None:
        with self.lock:
            job = self.jobs.get(job_id)
            return job if job is not None and self.visible(job, now) else None

    def create_job(self, job_type: str, name: str | None, resumable: bool, now: float) -> Job | None:
        """A new job, or None when the one-active-job rule forbids it."""
        cfg = self.config
        with self.lock:
            if cfg.one_active_job != "none":
                for other in self.jobs.values():
                    if cfg.one_active_job == "per_type" and other.type != job_type:
                        continue
                    if self.status(other, now) in ("created", "in_progress"):
                        return None
            job = Job(
                self._next_id(now),
                job_type,
                name,
                resumable,
                now,
                now + cfg.real(cfg.upload_window_seconds),
                now + cfg.real(cfg.download_window_seconds),
            )
            if self.faults.all_profile:
                job.no_such_key_left = ALL_PROFILE_NO_SUCH_KEY
            self.jobs[job.id] = job
        self.job_dir(job.id)
        return job

    def list_jobs(self, job_type: str, status: str | None, now: float) -> list[Job]:
        with self.lock:
            jobs = [
                j
                for j in self.jobs.values()
                if j.type == job_type
                and self.visible(j, now)
                and (status is None or self.status(j, now) == status)
            ]
        jobs.sort(key=lambda j: int(j.id), reverse=True)
        return jobs

    def all_jobs(self, now: float) -> list[Job]:
        with self.lock:
            jobs = [j for j in self.jobs.values() if self.visible(j, now)]
        jobs.sort(key=lambda j: int(j.id), reverse=True)
        return jobs

    # -- the job object -------------------------------------------------------------------

    def view(self, job: Job, now: float) -> dict:
        """The job object exactly as the API shows it at ``now``."""
        with self.lock:
            status = self.status(job, now)
            data: dict = {"id": job.id, "type": job.type}
            if job.name is not None:
                data["name"] = job.name
            data["resumable"] = job.resumable
            data["status"] = status
            data["created_at"] = iso_z(job.created)
            data["upload_url"] = self.upload_url(job)
            data["upload_expires_at"] = iso_z(job.upload_deadline)
            data["download_url"] = self.download_url(job)
            data["download_expires_at"] = iso_z(job.download_deadline)
            if status == "failed":
                assert job.outcome is not None  # failed: processed, with an error
                data["error"] = job.outcome.error
            elif status == "in_progress" and self.config.estimated_completion:
                eta = self.completion_eta(job)
                if eta <= now:  # the result file is still being written
                    eta = now + 1
                data["estimated_completion"] = iso_z(math.ceil(eta))
            return data

    # -- uploads --------------------------------------------------------------------------

    def accept_upload(self, job: Job, part: Path, started: float) -> str | None:
        """Store ``part`` as the job's submission object (GCS semantics: a later upload
        replaces an earlier one). Returns None when the job takes it (its first upload, or a
        replacement while the job is still ``created``, i.e. within ``pickup_seconds``),
        ``"late"`` when storage accepts it but the job has already taken an earlier upload
        (nothing changes for the job), or ``"expired"`` when the upload window had passed
        when the request started (the caller refuses)."""
        with self.lock:
            now = self.now()
            if job.uploaded_at is None:
                status = self.status(job, started)
                if status != "created":
                    return status
            elif self.status(job, now) != "created":
                job.late_uploads += 1
                return "late"
            else:  # a replacement before X picked the first upload up
                job.cancel.set()
                job.cancel = threading.Event()
                job.processed = False
                job.outcome = None
            os.replace(part, self.submission_path(job.id))
            job.uploaded_at = now
            job.generation += 1
            thread = threading.Thread(
                target=self._process,
                args=(job, job.generation, job.cancel),
                daemon=True,
                name=f"xcompliance-emulator-process-{job.id}",
            )
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()
        return None

    def _process(self, job: Job, generation: int, job_cancel: threading.Event) -> None:
        work = self.job_dir(job.id) / f"results-{generation}.jsonl"
        packed = work.with_name(work.name + ".gz")
        stored = None
        try:
            outcome = process_file(
                self.submission_path(job.id), work, self.rules[job.type], _Either(self._cancel, job_cancel)
            )
            if outcome.error is None:
                stored = self._pack(work, packed, outcome)
        except ProcessingCancelled:
            work.unlink(missing_ok=True)
            packed.unlink(missing_ok=True)
            return
        except Exception as exc:  # disk full, removed directory...: fail the job visibly
            logger.exception("processing job %s failed", job.id)
            outcome = ProcessOutcome(f"Internal error while processing: {type(exc).__name__}")
        with self.lock:
            if job.generation != generation:  # replaced meanwhile
                work.unlink(missing_ok=True)
                packed.unlink(missing_ok=True)
                return
            if stored is not None:
                os.replace(work, self.results_path(job.id))
                target = self.stored_results_path(job.id)
                if stored.gzipped:
                    os.replace(packed, target)
                else:
                    target.unlink(missing_ok=True)
                    target = self.results_path(job.id)
                stored = StoredObject(target, stored.size, stored.md5, stored.gzipped)
            job.stored = stored
            job.outcome = outcome
            job.processed = True

    def _pack(self, work: Path, packed: Path, outcome: ProcessOutcome) -> StoredObject:
        """Gzip the result file (when configured and not empty): the stored object."""
        if not self.config.gzip_results or outcome.size == 0:
            return StoredObject(work, outcome.size, outcome.md5, False)
        digest = hashlib.md5()
        size = 0
        compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # gzip wrapper, mtime 0
        with open(work, "rb") as src, open(packed, "wb") as dst:
            while True:
                if self._cancel.is_set():
                    raise ProcessingCancelled()
                data = src.read(1 << 20)
                out = compressor.compress(data) if data else compressor.flush()
                dst.write(out)
                digest.update(out)
                size += len(out)
                if not data:
                    break
        return StoredObject(packed, size, digest.digest(), True)

    # -- shutdown -------------------------------------------------------------------------

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the processing threads (they abandon their work) and wait for them."""
        self._cancel.set()
        with self.lock:
            threads = list(self._threads)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def wait_processed(self, job_id: str, timeout: float) -> bool:
        """Test helper: wait until the job's result file (or error) is ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                job = self.jobs.get(job_id)
                if job is not None and job.processed:
                    return True
            time.sleep(0.01)
        return False
