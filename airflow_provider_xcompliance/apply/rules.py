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

from collections.abc import Mapping
from typing import Final, Literal

from airflow_provider_xcompliance.client.jobs import JOB_TYPES
from airflow_provider_xcompliance.exceptions import ApplyConfigError, ApplyRefused

DELETE: Final = "delete"
SCRUB_GEO: Final = "scrub_geo"
KEEP: Final = "keep"
CHANGES = (DELETE, SCRUB_GEO, KEEP)
Change = Literal["delete", "scrub_geo", "keep"]

MAX_REASON_LENGTH = 64  # reasons are short words; a longer value is cut, never refused


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
