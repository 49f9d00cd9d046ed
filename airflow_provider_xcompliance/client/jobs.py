"""What the API returns, as typed values.

Every field is optional (newer API specs mark them so); timestamps become aware datetimes.
Signed URLs are kept out of ``repr`` and out of :meth:`ComplianceJob.metadata`, because whoever
holds one can upload to the job or read its results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pendulum

from airflow_provider_xcompliance.reports import JobMetadata

JOB_TYPES = ("tweets", "users")

CREATED = "created"
IN_PROGRESS = "in_progress"
COMPLETE = "complete"
FAILED = "failed"
EXPIRED = "expired"

ACTIVE_STATUSES = (CREATED, IN_PROGRESS)
ENDED_BADLY = (FAILED, EXPIRED)
LISTABLE_STATUSES = (CREATED, IN_PROGRESS, FAILED, COMPLETE)  # the list filter has no "expired"


def parse_timestamp(value: Any) -> datetime | None:
    """Parse the API's timestamps (``.000Z`` or ``+00:00`` forms); None when absent or unreadable."""
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = pendulum.parse(value)
    except (ValueError, TypeError):  # pendulum's ParserError is a ValueError
        return None
    return parsed if isinstance(parsed, datetime) else None


def _text(value: Any) -> str | None:
    """A string field of the API as given, or None when it is absent or not a string."""
    return value if isinstance(value, str) else None


def format_timestamp(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclass(frozen=True)
class ComplianceJob:
    """One batch compliance job as the API describes it."""

    id: str
    type: str | None = None
    name: str | None = None
    status: str | None = None
    resumable: bool = False
    created_at: datetime | None = None
    upload_expires_at: datetime | None = None
    download_expires_at: datetime | None = None
    estimated_completion: datetime | None = None
    error: str | None = None
    upload_url: str | None = field(default=None, repr=False)
    download_url: str | None = field(default=None, repr=False)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> ComplianceJob:
        """The job from an API answer, leniently: a field that is missing or of another type than
        the spec's is taken as absent, never trusted and never a crash further on."""
        job_id = data.get("id")
        return cls(
            id=str(job_id) if isinstance(job_id, (str, int)) and not isinstance(job_id, bool) else "",
            type=_text(data.get("type")),
            name=_text(data.get("name")),
            status=_text(data.get("status")),
            resumable=data.get("resumable") is True,
            created_at=parse_timestamp(data.get("created_at")),
            upload_expires_at=parse_timestamp(data.get("upload_expires_at")),
            download_expires_at=parse_timestamp(data.get("download_expires_at")),
            estimated_completion=parse_timestamp(data.get("estimated_completion")),
            error=_text(data.get("error")),
            upload_url=_text(data.get("upload_url")),
            download_url=_text(data.get("download_url")),
        )

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def has_ended_badly(self) -> bool:
        return self.status in ENDED_BADLY

    @property
    def has_ended(self) -> bool:
        """Complete, failed or expired: its status will not change any more."""
        return self.status == COMPLETE or self.has_ended_badly

    def metadata(self) -> JobMetadata:
        """The job without its signed URLs: plain JSON, safe for XCom, logs and trigger events."""
        return JobMetadata(
            id=self.id,
            type=self.type,
            name=self.name,
            status=self.status,
            resumable=self.resumable,
            created_at=format_timestamp(self.created_at),
            upload_expires_at=format_timestamp(self.upload_expires_at),
            download_expires_at=format_timestamp(self.download_expires_at),
            estimated_completion=format_timestamp(self.estimated_completion),
            error=self.error,
        )


@dataclass(frozen=True)
class RateLimit:
    """The ``x-rate-limit-*`` headers of one answer."""

    limit: int | None
    remaining: int | None
    reset_at: datetime | None
