"""The report of an apply run: counts by target, change and reason."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from airflow_provider_xcompliance.apply.rules import DELETE, ChangeRules
from airflow_provider_xcompliance.reports import ApplyReport, TargetCounts


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
    kind: Literal["deleted", "updated"] = "deleted" if change == DELETE else "updated"
    counts[kind] += total
    merged = Counter(report[kind]) + Counter(by_reason)
    report[kind] = dict(sorted(merged.items()))
    report["changed"] = True
