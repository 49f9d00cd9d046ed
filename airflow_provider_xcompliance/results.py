"""Reading the JSON Lines results of a job into a summary, one block at a time."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from airflow_provider_xcompliance.exceptions import InvalidResultsError


class ResultsSummary:
    """Counts lines, distinct IDs, actions and reasons of a results stream.

    Fed with raw blocks as they arrive, so the file never has to be in memory; only the set of
    distinct flagged IDs grows (results list only the IDs that need action).
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines = 0
        self.bytes = 0
        self.by_action: Counter[str] = Counter()
        self.by_reason: Counter[str] = Counter()
        self._ids: set[int | str] = set()
        self._tail = b""

    def feed(self, block: bytes) -> None:
        self.bytes += len(block)
        data = self._tail + block
        cut = data.rfind(b"\n") + 1
        self._tail = data[cut:]
        self._lines(data[:cut])

    def finish(self) -> None:
        tail, self._tail = self._tail, b""
        self._lines(tail)

    def _lines(self, data: bytes) -> None:
        """Parse a run of whole lines as one JSON array (one C call, not one per line); only
        when that fails, go line by line to say which line is broken."""
        lines = [line for line in data.split(b"\n") if line.strip()]
        if not lines:
            return
        try:
            records = json.loads(b"[" + b",".join(lines) + b"]")
            if not all(isinstance(record, dict) and "id" in record for record in records):
                raise ValueError
        except ValueError:
            records = [self._record(line, self.lines + number) for number, line in enumerate(lines, 1)]
        self.lines += len(records)
        self._ids.update(int(r["id"]) if str(r["id"]).isdigit() else str(r["id"]) for r in records)
        self.by_action.update(str(r.get("action", "unknown")) for r in records)
        self.by_reason.update(str(r.get("reason", "unknown")) for r in records)

    def _record(self, line: bytes, number: int) -> dict[str, Any]:
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or "id" not in record:
                raise ValueError("not an object with an 'id'")
        except ValueError as exc:
            shown = line[:80].decode("utf-8", "replace")
            raise InvalidResultsError(f"{self.source}, line {number}: {shown!r} is not a result ({exc})") from None
        return record

    @property
    def distinct_ids(self) -> int:
        return len(self._ids)

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "distinct_ids": self.distinct_ids,
            "bytes": self.bytes,
            "by_action": dict(sorted(self.by_action.items())),
            "by_reason": dict(sorted(self.by_reason.items())),
        }
