"""Keeping a resumable upload's session URL from one try of a task to the next.

A worker killed mid-upload leaves a session at the storage server that holds what it received.
The next try (a retry, or a Clear hours later) asks that session where it stands and sends only
the rest; it can do so after the job's 15-minute upload window, because a session lives a week.

The session URL is a credential, like a signed URL. It is kept in an Airflow Variable whose name
Airflow treats as secret (``x_compliance_resume_secret_<job id>``), encrypted with a key
derived from the connection's bearer token, so the stored value is useless without the token. The
record also names the ID file's size and version: a file that changed since is not resumed into.
The Variable is removed once the upload is complete.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from functools import cached_property
from typing import Protocol

from airflow.sdk import ObjectStoragePath
from cryptography.fernet import Fernet, InvalidToken

from airflow_provider_xcompliance.client.masking import mask_url
from airflow_provider_xcompliance.utils.logs import Log

VARIABLE_PREFIX = "x_compliance_resume_secret_"


class SessionKeeper(Protocol):
    """Where a resumable upload keeps its session URL between tries."""

    @property
    def session_url(self) -> str | None:
        """The session an earlier try opened for these same bytes, if any."""

    def save(self, session_url: str) -> None:
        """Remember a newly opened session."""

    def forget(self) -> None:
        """The upload is complete (or the session is gone): keep nothing."""


def source_version(path: ObjectStoragePath) -> str:
    """What identifies the bytes of an ID file: its URL, size and ETag (or modification time)."""
    info = path.fs.info(path.path)
    version = next((info[key] for key in ("ETag", "etag", "mtime", "LastModified") if info.get(key)), "")
    return f"{path}|{info.get('size')}|{version}"


class VariableSessionKeeper:
    """Keeps the session URL of job ``job_id``'s upload in an encrypted, secret-named Variable.

    Failures to reach the Variables are logged and otherwise ignored: they cost a resume, never
    the upload.
    """

    def __init__(self, job_id: str, bearer_token: str, source: str, log: Log) -> None:
        self.variable = f"{VARIABLE_PREFIX}{job_id}"
        self.source = source
        self.log = log
        key = hmac.new(
            bearer_token.encode(), f"x-compliance upload session {job_id}".encode(), hashlib.sha256
        )
        self._fernet = Fernet(base64.urlsafe_b64encode(key.digest()))

    @cached_property
    def session_url(self) -> str | None:
        from airflow.sdk import Variable

        try:
            stored = Variable.get(self.variable, default=None)
        except Exception as exc:  # no Variables outside a task, a backend error: resume nothing
            self.log.warning("Could not read the Variable %s (%s)", self.variable, type(exc).__name__)
            return None
        if not stored:
            return None
        try:
            record = json.loads(self._fernet.decrypt(stored.encode()))
        except (InvalidToken, ValueError):
            self.log.warning(
                "The kept upload session in %s cannot be read (the bearer token changed?); not resuming it",
                self.variable,
            )
            return None
        mask_url(record.get("url"))
        if record.get("source") != self.source:
            self.log.warning(
                "The IDs file changed since an earlier try opened its upload session; not resuming"
            )
            return None
        return record.get("url") or None

    def save(self, session_url: str) -> None:
        from airflow.sdk import Variable

        record = json.dumps({"url": session_url, "source": self.source}).encode()
        try:
            Variable.set(
                self.variable,
                self._fernet.encrypt(record).decode(),
                description="The resumable upload session of an X compliance job, encrypted with the "
                "connection's bearer token; removed once the upload is complete.",
            )
        except Exception as exc:
            self.log.warning(
                "Could not keep the upload session in %s (%s)", self.variable, type(exc).__name__
            )
        self.__dict__["session_url"] = session_url

    def forget(self) -> None:
        from airflow.sdk import Variable

        if self.__dict__.get("session_url", True) is None:
            return  # nothing was loaded or saved: nothing to remove
        try:
            Variable.delete(self.variable)
        except Exception as exc:
            self.log.warning("Could not remove the Variable %s (%s)", self.variable, type(exc).__name__)
        self.__dict__["session_url"] = None
