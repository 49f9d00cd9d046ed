"""Resumable upload sessions: the record of one, and starting, finding and addressing them.

A mixin of ``state.EmulatorState`` built on ``objects.JobObjects``: a session's bytes go to a part
file of its job, and its URL is the job's submission object with an ``upload_id``. Starting a
session extends the job's ``session_deadline``, which the lifecycle reads; the protocol spoken on
a session is in ``gcs_uploads``.
"""

from __future__ import annotations

import secrets
import threading
from pathlib import Path

from .jobs import Job
from .objects import JobObjects

__all__ = ["Session", "UploadSessions"]


class Session:
    """One resumable upload session (its own lock serializes the chunks sent to it)."""

    __slots__ = (
        "id",
        "job_id",
        "path",
        "created",
        "expires",
        "stored",
        "total",
        "complete",
        "lock",
        "partial_done",
        "final_lost",
    )

    def __init__(self, session_id: str, job_id: str, path: Path, created: float, expires: float):
        self.id = session_id
        self.job_id = job_id
        self.path = path
        self.created = created
        self.expires = expires
        self.stored = 0  # bytes stored, always a prefix of the object
        self.total: int | None = None  # object size, once the client has said
        self.complete = False
        self.lock = threading.Lock()
        self.partial_done = False  # fault profile "all": the partial 308 was given
        self.final_lost = False  # fault profile "all": the final answer was lost


class UploadSessions(JobObjects):
    """Starting and finding resumable upload sessions (a mixin of ``EmulatorState``)."""

    # Set by EmulatorState.__init__.
    lock: threading.RLock
    sessions: dict[str, Session]

    def start_session(self, job: Job, now: float) -> Session:
        cfg = self.config
        path = self.new_part_path(job.id, "session")
        path.touch()
        session = Session(
            secrets.token_urlsafe(48), job.id, path, now, now + cfg.real(cfg.session_window_seconds)
        )
        with self.lock:
            self.sessions[session.id] = session
            job.session_deadline = max(job.session_deadline or 0.0, session.expires)
        return session

    def find_session(self, session_id: str, now: float) -> Session | None:
        with self.lock:
            session = self.sessions.get(session_id)
        if session is None or now >= session.expires:
            return None
        return session

    def session_url(self, job: Job, session: Session) -> str:
        return f"{self.base_url}{self.object_path(job, 'submission')}?upload_id={session.id}"
