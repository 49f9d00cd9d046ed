"""The records the state keeps for each job: the job itself and the results object it holds.

In a module of their own so that the state and the parts it is built from (``objects``,
``sessions``) can all name them without importing one another.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from .rules import ProcessOutcome

__all__ = ["Job", "StoredObject"]


class Job:
    """One compliance job (mutable; guarded by the state lock)."""

    __slots__ = (
        "id",
        "type",
        "name",
        "resumable",
        "created",
        "upload_deadline",
        "download_deadline",
        "session_deadline",
        "uploaded_at",
        "processed",
        "outcome",
        "generation",
        "cancel",
        "stored",
        "no_such_key_left",
        "late_uploads",
    )

    def __init__(
        self,
        job_id: str,
        job_type: str,
        name: str | None,
        resumable: bool,
        created: float,
        upload_deadline: float,
        download_deadline: float,
    ):
        self.id = job_id
        self.type = job_type
        self.name = name
        self.resumable = resumable
        self.created = created
        self.upload_deadline = upload_deadline
        self.download_deadline = download_deadline
        self.session_deadline: float | None = None  # latest expiry of a resumable session
        self.uploaded_at: float | None = None  # when a complete upload was accepted
        self.processed = False  # the result file (or the error) is ready
        self.outcome: ProcessOutcome | None = None
        self.generation = 0  # bumped by every accepted (or replacing) upload
        self.cancel = threading.Event()  # set when a replacing upload abandons a processing
        self.stored: StoredObject | None = None  # the results object, once complete
        self.no_such_key_left = 0  # fault profile "all": NoSuchKey answers still to give
        self.late_uploads = 0  # uploads accepted by storage after the job had taken one


@dataclass(frozen=True)
class StoredObject:
    """The results object as storage holds it."""

    path: Path  # the stored bytes (gzip when ``gzipped``)
    size: int
    md5: bytes
    gzipped: bool
