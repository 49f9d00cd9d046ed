"""Operators built outside a DAG run: what they declare."""

from airflow.sdk import Asset

from airflow_provider_xcompliance.operators.compliance import (
    XComplianceDownloadResultsOperator,
    results_asset,
)


def test_download_operator_adds_its_asset_to_any_outlets():
    mine = Asset("s3://bucket/mine")
    for outlets in (None, mine, [mine]):
        operator = XComplianceDownloadResultsOperator(
            task_id="d", job_id="1", results_path="/r/", job_type="users", outlets=outlets
        )
        assert operator.outlets[-1] == results_asset("users")
        assert (mine in operator.outlets) is (outlets is not None)
