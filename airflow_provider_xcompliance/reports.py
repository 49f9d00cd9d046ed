"""The typed contracts downstream tasks rely on: what the tasks return (XCom), what their Asset
events carry (``extra``), and what the trigger sends back. Every path fills every key."""

from __future__ import annotations

from typing import TypedDict


class JobMetadata(TypedDict):
    """A job without its signed URLs (``ComplianceJob.metadata()``); timestamps are ISO 8601."""

    id: str
    type: str | None
    name: str | None
    status: str | None
    resumable: bool
    created_at: str | None
    upload_expires_at: str | None
    download_expires_at: str | None
    estimated_completion: str | None
    error: str | None


class JobEvent(TypedDict):
    """The trigger's event: the job's final status (or ``"error"``), the job, and a message."""

    status: str
    job: JobMetadata
    message: str


class UploadReport(TypedDict):
    """What an upload did. ``already_uploaded`` is true when an earlier try had uploaded the
    IDs; then ``ids`` and ``bytes`` are None (this try sent nothing)."""

    job_id: str
    source: str
    ids: int | None
    bytes: int | None
    resumable: bool
    already_uploaded: bool
    seconds: float


class DownloadSummary(TypedDict):
    """What landed: the download task's XCom and its Asset event's ``extra``."""

    job_id: str
    job_type: str | None
    path: str
    lines: int  # result lines, duplicates included: the IDs that need action
    bytes: int
    by_action: dict[str, int]
    by_reason: dict[str, int]
    seconds: float


class ExportReport(TypedDict):
    """What an export wrote: the export task's XCom."""

    job_type: str
    archive: str  # the archive's name: connection and table, or the data set's path
    path: str  # the ID file
    ids: int  # lines written (IDs; duplicates only where the source held them)
    bytes: int
    seconds: float


class TargetCounts(TypedDict):
    """Records changed in one table or object."""

    deleted: int
    updated: int


class ApplyReport(TypedDict):
    """What an apply task did: its XCom, and its Asset event's ``extra``."""

    job_type: str
    job_id: str | None
    results_path: str
    target: str  # the table, or the data set's path
    dry_run: bool
    result_lines: int  # lines read from the results file
    deleted: dict[str, int]  # records deleted, by reason
    updated: dict[str, int]  # records whose geo data was removed, by reason
    kept: dict[str, int]  # result lines an override kept, by reason
    targets: dict[str, TargetCounts]  # per table, or per rewritten object
    changed: bool  # False when there was nothing to change (e.g. the results were applied already)
    seconds: float


class CycleJobReport(TypedDict):
    """One job type's part of a cycle: what was exported, what X flagged, what was changed."""

    job_id: str | None
    ids: int  # IDs exported and checked
    result_lines: int  # results that ask for action
    by_reason: dict[str, int]  # result lines by reason
    deleted: dict[str, int]  # records deleted, by reason (dependents included)
    updated: dict[str, int]  # records whose geo data was removed, by reason
    targets: dict[str, TargetCounts]  # records changed per table or object
    dry_run: bool


class CycleReport(TypedDict):
    """What one compliance cycle over an archive did: the cycle's report task's XCom."""

    archive: str
    job_types: list[str]
    jobs: dict[str, CycleJobReport]  # by job type
    seconds: dict[str, float]  # per step: export_<type>, download_<type>, apply_<type>
    reported_at: str  # when the cycle ended (UTC), after every apply
