"""The report contracts: each producer fills exactly the keys its TypedDict declares."""

from __future__ import annotations

from airflow_provider_xcompliance.apply.report import new_report
from airflow_provider_xcompliance.apply.rules import ChangeRules
from airflow_provider_xcompliance.client.jobs import ComplianceJob
from airflow_provider_xcompliance.reports import ApplyReport, DownloadSummary, JobMetadata
from airflow_provider_xcompliance.results import ResultsSummary


def test_job_metadata_has_every_declared_key_and_no_signed_url():
    job = ComplianceJob.from_api(
        {"id": "1", "status": "complete", "upload_url": "https://u", "download_url": "https://d"}
    )
    metadata = job.metadata()
    assert set(metadata) == set(JobMetadata.__annotations__)
    assert "https://" not in repr(metadata)
    assert set(ComplianceJob(id="7").metadata()) == set(
        JobMetadata.__annotations__
    )  # the trigger's error event


def test_download_summary_keys_are_the_summary_plus_the_job():
    summary = ResultsSummary("results")
    summary.feed(b'{"id":"1","action":"delete","reason":"deleted"}\n')
    summary.finish()
    declared = set(DownloadSummary.__annotations__)
    assert set(summary.as_dict()) | {"job_id", "job_type", "path", "seconds"} == declared


def test_apply_report_starts_with_every_declared_key():
    report = new_report(ChangeRules("users"), "job-1", "file:///r.jsonl", "tweets", dry_run=True)
    assert set(report) == set(ApplyReport.__annotations__)
    assert report["changed"] is False and report["deleted"] == {} and report["job_type"] == "users"
