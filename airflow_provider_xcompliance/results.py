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
        for line in data[:cut].splitlines():
            self._line(line)

    def finish(self) -> None:
        tail, self._tail = self._tail, b""
        if tail:
            self._line(tail)

    def _line(self, line: bytes) -> None:
        if not line.strip():
            return
        self.lines += 1
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or "id" not in record:
                raise ValueError("not an object with an 'id'")
        except ValueError as exc:
            shown = line[:80].decode("utf-8", "replace")
            raise InvalidResultsError(f"{self.source}, line {self.lines}: {shown!r} is not a result ({exc})") from None
        raw_id = str(record["id"])
        self._ids.add(int(raw_id) if raw_id.isdigit() else raw_id)
        self.by_action[str(record.get("action", "unknown"))] += 1
        self.by_reason[str(record.get("reason", "unknown"))] += 1

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
