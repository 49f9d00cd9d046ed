"""X's result lines read as flagged records, one change each by the rules."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import msgspec

from airflow_provider_xcompliance.apply.rules import MAX_REASON_LENGTH, Change, ChangeRules
from airflow_provider_xcompliance.exceptions import InvalidResultsError
from airflow_provider_xcompliance.object_storage import LineTooLong, Location, read_lines, to_path

MAX_LINE = 1024 * 1024  # a result line is ~150 bytes; a line-feed-free object is not JSON Lines


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
