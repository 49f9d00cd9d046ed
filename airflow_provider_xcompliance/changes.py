"""Step 5 of X's guide: what each result obliges the user to change, shared by every apply target.

The rules follow ``reason``, never ``action`` (X sends ``delete`` for every reason, ``scrub_geo``
included):

- tweets: every reason but ``scrub_geo``, unknown ones included, deletes the tweet;
  ``scrub_geo`` keeps it and removes its geo data;
- users: every reason deletes the user and every stored tweet of that user.

A per-reason override (``{"protected": "keep"}``) lets a user who hides protected records keep
them. Results are read as a stream; duplicated IDs and IDs absent from the data are harmless.
"""

from __future__ import annotations

import hmac
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

import msgspec
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_xcompliance.exceptions import InvalidResultsError, XComplianceError
from airflow_provider_xcompliance.models import JOB_TYPES
from airflow_provider_xcompliance.reports import ApplyReport, TargetCounts
from airflow_provider_xcompliance.storage import LineTooLong, Location, read_lines, to_path

DELETE = "delete"
SCRUB_GEO = "scrub_geo"
KEEP = "keep"
CHANGES = (DELETE, SCRUB_GEO, KEEP)
Change = Literal["delete", "scrub_geo", "keep"]

AUDIT_IDS = ("hmac", "plain", "none")
DEFAULT_AUDIT_KEY_VARIABLE = "x_compliance_audit_key"
MAX_REASON_LENGTH = 64  # reasons are short words; a longer value is cut, never refused
MAX_LINE = 1024 * 1024  # a result line is ~150 bytes; a line-feed-free object is not JSON Lines


class ApplyConfigError(XComplianceError, AirflowFailException):
    """The apply task is configured wrongly (a missing table, column or key): nothing was changed."""


class ApplyRefused(XComplianceError, AirflowFailException):
    """A safety guard refused the change (``max_delete_fraction``): nothing was changed."""


class ChangeRules:
    """Which change a result asks for, by job type and reason."""

    def __init__(self, job_type: str, overrides: Mapping[str, str] | None = None) -> None:
        if job_type not in JOB_TYPES:
            raise ApplyConfigError(f"job_type must be one of {', '.join(JOB_TYPES)}, not {job_type!r}")
        self.job_type = job_type
        self.overrides = dict(overrides or {})
        for reason, change in self.overrides.items():
            allowed = CHANGES if job_type == "tweets" else (DELETE, KEEP)
            if change not in allowed:
                raise ApplyConfigError(
                    f"override {reason!r}: {change!r} is not a change for {job_type} "
                    f"(one of {', '.join(allowed)})"
                )

    def change_for(self, reason: str) -> Change:
        if reason in self.overrides:
            return self.overrides[reason]  # type: ignore[return-value]
        if self.job_type == "tweets" and reason == SCRUB_GEO:
            return SCRUB_GEO
        return DELETE


class FlaggedRecord(NamedTuple):
    """One result line: the ID (decimal digits), its reason, the change it asks for."""

    id: str
    reason: str
    change: Change
    created_at: str | None
    line: int


class _ResultLine(msgspec.Struct, gc=False):
    id: Any
    reason: Any = "unknown"
    created_at: Any = None


_DECODER = msgspec.json.Decoder(_ResultLine)


def read_flagged(results_path: Location, rules: ChangeRules) -> Iterator[FlaggedRecord]:
    """Stream the results file as flagged records; a broken line fails with the file and line number.

    Callers read the whole stream before they change anything, so a broken last line still
    means nothing is changed.
    """
    path = to_path(results_path)
    try:
        for number, line in enumerate(read_lines(path, MAX_LINE), 1):
            if line.strip():
                yield _flagged_record(path, number, line, rules)
    except LineTooLong as exc:
        raise InvalidResultsError(f"{path}, {exc}: not JSON Lines") from None


def _flagged_record(path: Any, number: int, line: bytes, rules: ChangeRules) -> FlaggedRecord:
    try:
        result = _DECODER.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        shown = line[:80].decode("utf-8", "replace")
        raise InvalidResultsError(f"{path}, line {number}: {shown!r} is not a result ({exc})") from None
    raw_id = result.id
    record_id = str(raw_id) if isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool) else ""
    if not (record_id.isascii() and record_id.isdigit()):
        raise InvalidResultsError(f"{path}, line {number}: id {raw_id!r} is not a tweet or user ID")
    reason = str(result.reason)[:MAX_REASON_LENGTH]
    created_at = result.created_at if isinstance(result.created_at, str) else None
    return FlaggedRecord(record_id, reason, rules.change_for(reason), created_at, number)


@dataclass(frozen=True)
class AuditIdentity:
    """How an audit row names a record: a keyed hash (HMAC-SHA256) by default, since tweet and
    user IDs are X content themselves; the plain ID or nothing only when the user asks."""

    mode: str = "hmac"
    key: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in AUDIT_IDS:
            raise ApplyConfigError(f"audit_ids must be one of {', '.join(AUDIT_IDS)}, not {self.mode!r}")
        if self.mode == "hmac" and not self.key:
            raise ApplyConfigError(
                "audit_ids='hmac' needs a key, and none is set. Set the Airflow Variable "
                f"{DEFAULT_AUDIT_KEY_VARIABLE!r} (or the one audit_key_variable names), e.g. "
                f'`airflow variables set {DEFAULT_AUDIT_KEY_VARIABLE} "$(openssl rand -hex 32)"`, '
                "or keep it in a secrets backend; or pass audit_ids='plain' or 'none'"
            )

    def record_key(self, record_id: str) -> str | None:
        if self.mode == "hmac":
            return hmac.digest(self.key, record_id.encode(), "sha256").hex()  # type: ignore[arg-type]
        return record_id if self.mode == "plain" else None


# The audit trail's columns, the same for a SQL audit table and a JSON Lines audit object.
AUDIT_COLUMNS = ("record_key", "record_type", "target", "reason", "change", "job_id", "run_id", "applied_at")


def utc_now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def new_report(
    rules: ChangeRules, job_id: str | None, results_path: Any, target: str, dry_run: bool
) -> ApplyReport:
    return ApplyReport(
        job_type=rules.job_type,
        job_id=job_id,
        results_path=str(results_path),
        target=target,
        dry_run=dry_run,
        result_lines=0,
        deleted={},
        updated={},
        kept={},
        targets={},
        changed=False,
        seconds=0.0,
    )


def add_counts(report: ApplyReport, target: str, change: str, by_reason: Mapping[str, int]) -> None:
    """Add the records a change made (or would make) in one target to the report."""
    total = sum(by_reason.values())
    if not total:
        return
    counts = report["targets"].setdefault(target, TargetCounts(deleted=0, updated=0))
    kind = "deleted" if change == DELETE else "updated"
    counts[kind] += total
    merged = Counter(report[kind]) + Counter(by_reason)
    report[kind] = dict(sorted(merged.items()))
    report["changed"] = True


def check_delete_fraction(max_delete_fraction: float | None, target: str, deleting: int, total: int) -> None:
    """Refuse a run that would delete more than the allowed fraction of a table or data set:
    a wrong ID column must not wipe it."""
    if max_delete_fraction is None or not total:
        return
    if deleting / total > max_delete_fraction:
        raise ApplyRefused(
            f"Refused: the results would delete {deleting} of {total} records in {target} "
            f"({deleting / total:.1%}), more than max_delete_fraction={max_delete_fraction:g}. "
            "Check the ID column; nothing was changed"
        )
