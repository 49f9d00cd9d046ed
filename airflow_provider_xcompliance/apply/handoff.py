"""The hand-off from download to apply: which results file, of which job, checked to be of the
job type that is applied.

Tweet and user IDs of 2006-2010 overlap as numbers, so a users results file applied as tweets
would delete the tweets whose IDs happen to equal those user IDs. The download's summary (or X's
job) says what the results are; a mismatch is refused before anything is read or changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_xcompliance.exceptions import ApplyConfigError


@dataclass(frozen=True)
class ResultsToApply:
    """A results file and what is known of the job that made it."""

    path: Any  # a path or an object-storage URL
    job_id: str | None = None
    job_type: str | None = None


def results_to_apply(results: Any, results_path: Any, job_id: str | None) -> ResultsToApply:
    """The results an apply task was given: ``results`` (a download's summary, as its XCom or
    a dict with ``path`` and optionally ``job_id``, ``job_type``) or ``results_path``; a
    ``job_id`` given to the task wins over the summary's."""
    if (results is None) == (results_path is None):
        raise ApplyConfigError(
            "Give the results as results= (a download's summary) or results_path=, one of them"
        )
    if results is None:
        return ResultsToApply(results_path, job_id or None)
    if not isinstance(results, Mapping) or not results.get("path"):
        raise ApplyConfigError(
            f"results must be a download's summary (a mapping with 'path', 'job_id', 'job_type'), "
            f"not {type(results).__name__}"
        )
    summary_type = results.get("job_type")
    return ResultsToApply(
        results["path"],
        job_id or (str(results["job_id"]) if results.get("job_id") else None),
        str(summary_type) if summary_type else None,
    )


def check_results_job_type(
    results: ResultsToApply, job_type: str, source: str = "the download's summary"
) -> None:
    """Refuse results of another job type than the one applied, naming both."""
    if results.job_type is not None and results.job_type != job_type:
        job = f" of job {results.job_id}" if results.job_id else ""
        raise ApplyConfigError(
            f"The results {results.path}{job} are {results.job_type} results ({source} says so), "
            f"but this task applies {job_type} results: nothing was changed. Tweet and user IDs "
            "overlap as numbers, so applying them would change the wrong records"
        )
