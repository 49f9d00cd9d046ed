"""What a run over a data set matches records on, and what it counts of each object."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from airflow.sdk import ObjectStoragePath

from airflow_provider_xcompliance.apply.rules import DELETE, SCRUB_GEO

_RANK = {SCRUB_GEO: 1, DELETE: 2}  # an ID flagged more than once: delete wins over scrub_geo


@dataclass
class Flagged:
    """The flagged IDs that ask for a change, as ints: about 100 bytes per ID in a dict (the
    ``(change, reason)`` values are shared), so memory follows the results, not the data set."""

    changes: dict[int, tuple[str, str]] = field(default_factory=dict)
    partitions: set[str] | None = None  # the folders to read; None: every object
    lines: int = 0
    kept: Counter[str] = field(default_factory=Counter)
    _kinds: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)

    def add(self, record_id: int, change: str, reason: str) -> None:
        known = self.changes.get(record_id)
        if known is None or _RANK[change] > _RANK[known[0]]:
            self.changes[record_id] = self._kinds.setdefault((change, reason), (change, reason))


@dataclass(frozen=True)
class Plan:
    """What a record is matched on and what a match does, for one run."""

    flagged: dict[int, tuple[str, str]]
    match_field: str  # the tweet's ID (tweets jobs) or its author's ID (users jobs)
    id_field: str
    geo_fields: tuple[str, ...]
    by_author: bool


@dataclass
class ObjectChanges:
    """What one object holds and loses; ``audit`` collects ``(record id, reason, change)`` of
    each changed record when the object is rewritten."""

    records: int = 0
    deleted: Counter[str] = field(default_factory=Counter)
    updated: Counter[str] = field(default_factory=Counter)
    audit: list[tuple[str | None, str, str]] | None = None

    @property
    def count(self) -> int:
        return sum(self.deleted.values()) + sum(self.updated.values())

    def add(self, change: str, reason: str, record_id: Any) -> None:
        (self.deleted if change == DELETE else self.updated)[reason] += 1
        if self.audit is not None:
            self.audit.append((None if record_id is None else str(record_id), reason, change))


# Counts one object's changes into ObjectChanges and, given a file, writes the changed object.
ObjectProcess = Callable[[ObjectStoragePath, Plan, ObjectChanges, "IO[bytes] | None"], None]
