"""OpenLineage: the Datasets each operator reports, by the naming spec (the events a real DAG run
emits: tests/system/test_lineage_dag.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote

import pytest

from airflow_provider_xcompliance.object_storage import atomic_writer
from airflow_provider_xcompliance.operators.apply import (
    XComplianceApplyToFilesOperator,
    XComplianceApplyToSqlOperator,
)
from airflow_provider_xcompliance.operators.compliance import (
    XComplianceCreateJobOperator,
    XComplianceDownloadResultsOperator,
    XComplianceSubmitJobOperator,
    XComplianceUploadIdsOperator,
)
from airflow_provider_xcompliance.utils.openlineage import dataset_name, to_dataset

TOKEN = "lineage-test-token-93b1f07a"
TEST_DAGS = Path(__file__).parent / "dags"


def names(datasets) -> list[tuple[str, str]]:
    return [(d.namespace, d.name) for d in datasets]


@pytest.fixture
def x_api(monkeypatch):
    """The default X connection, at X's own API."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_X_COMPLIANCE_DEFAULT",
        json.dumps({"conn_type": "x_compliance", "host": "https://api.x.com", "password": TOKEN}),
    )


# --- the naming rule ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("s3://aws_default@bucket/key", ("s3://bucket", "key")),
        ("s3://bucket/ids/2024-01-01.txt", ("s3://bucket", "ids/2024-01-01.txt")),
        ("s3://aws_default@bucket/results/", ("s3://bucket", "results")),
        ("s3a://bucket/key", ("s3://bucket", "key")),
        ("gs://google_cloud_default@bucket/a/b.jsonl", ("gs://bucket", "a/b.jsonl")),
        ("gcs://bucket/a", ("gs://bucket", "a")),
        ("s3://bucket/", ("s3://bucket", "/")),
        ("file:///data/ids.txt", ("file", "/data/ids.txt")),
        ("file:///data/tweets/", ("file", "/data/tweets")),
        ("/data/ids.txt", ("file", "/data/ids.txt")),
    ],
)
def test_dataset_names_follow_the_openlineage_spec(location, expected):
    assert dataset_name(location) == expected
    dataset = to_dataset(location)
    assert (dataset.namespace, dataset.name) == expected


def test_relative_and_home_paths_are_named_by_their_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert dataset_name("ids.txt") == ("file", str(tmp_path / "ids.txt"))
    assert dataset_name(Path("sub/ids.txt")) == ("file", str(tmp_path / "sub" / "ids.txt"))
    assert dataset_name("~/ids.txt") == ("file", os.path.expanduser("~/ids.txt"))


def test_object_storage_paths_lose_their_connection_id():
    from airflow.sdk import ObjectStoragePath

    path = ObjectStoragePath("file:///data/results/tweets-1.jsonl")
    assert dataset_name(path) == ("file", "/data/results/tweets-1.jsonl")
    path = ObjectStoragePath("s3://aws_default@bucket/results/tweets-1.jsonl")
    assert str(path).startswith("s3://aws_default@")  # what Airflow itself would name it
    assert dataset_name(path) == ("s3://bucket", "results/tweets-1.jsonl")


# --- the compliance operators ------------------------------------------------------------------


def test_submit_reads_the_id_file_into_the_jobs_of_its_type(x_api):
    operator = XComplianceSubmitJobOperator(
        task_id="submit", job_type="tweets", ids_path="s3://aws_default@bucket/ids/tweets.txt"
    )
    lineage = operator.get_openlineage_facets_on_complete(None)
    assert names(lineage.inputs) == [("s3://bucket", "ids/tweets.txt")]
    assert names(lineage.outputs) == [("x-compliance://api.x.com", "jobs/tweets")]


def test_upload_names_the_jobs_by_the_type_of_the_job_it_uploaded_to(x_api):
    operator = XComplianceUploadIdsOperator(task_id="upload", job_id="123", ids_path="/data/users.txt")
    lineage = operator.get_openlineage_facets_on_complete(None)
    assert names(lineage.inputs) == [("file", "/data/users.txt")]
    assert lineage.outputs == []  # the job's type is known once execute has fetched the job
    operator.job_type = "users"  # as execute sets it
    lineage = operator.get_openlineage_facets_on_complete(None)
    assert names(lineage.outputs) == [("x-compliance://api.x.com", "jobs/users")]


def test_the_jobs_namespace_is_the_connections_api_host(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_X_EMULATOR",
        json.dumps({"conn_type": "x_compliance", "host": "http://127.0.0.1:8765", "password": TOKEN}),
    )
    operator = XComplianceSubmitJobOperator(
        task_id="submit", job_type="users", ids_path="/ids.txt", x_conn_id="x_emulator"
    )
    lineage = operator.get_openlineage_facets_on_complete(None)
    assert names(lineage.outputs) == [("x-compliance://127.0.0.1:8765", "jobs/users")]


def test_create_reports_no_dataset(x_api):
    operator = XComplianceCreateJobOperator(task_id="create", job_type="tweets")
    lineage = operator.get_openlineage_facets_on_complete(None)
    assert lineage.inputs == [] and lineage.outputs == []


def test_download_reports_the_object_it_wrote(x_api):
    operator = XComplianceDownloadResultsOperator(
        task_id="download",
        job_id="123",
        results_path="s3://aws_default@bucket/results/",
        job_type="tweets",
    )
    lineage = operator.get_openlineage_facets_on_complete(None)
    assert names(lineage.inputs) == [("x-compliance://api.x.com", "jobs/tweets")]
    assert lineage.outputs == []  # a folder: the object's name is known only once written
    operator.written_path = "s3://aws_default@bucket/results/tweets-123.jsonl"  # as execute sets it
    lineage = operator.get_openlineage_facets_on_complete(None)
    assert names(lineage.outputs) == [("s3://bucket", "results/tweets-123.jsonl")]


def test_download_to_an_exact_object_names_it_before_it_ran(x_api):
    operator = XComplianceDownloadResultsOperator(
        task_id="download", job_id="123", results_path="file:///data/results.jsonl"
    )
    lineage = operator.get_openlineage_facets_on_complete(None)
    assert names(lineage.outputs) == [("file", "/data/results.jsonl")]
    assert lineage.inputs == []  # no job type given, and the job was not downloaded here


# --- the apply operators -----------------------------------------------------------------------


@pytest.fixture
def sqlite_conn(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "app.sqlite"
    monkeypatch.setenv("AIRFLOW_CONN_XC_SQLITE", "sqlite://" + quote(str(path), safe=""))
    return path


def test_apply_to_sqlite_reads_the_results_and_writes_its_tables(sqlite_conn):
    operator = XComplianceApplyToSqlOperator(
        task_id="apply",
        conn_id="xc_sqlite",
        job_type="tweets",
        table="tweets",
        audit_table="xc_audit",
        users_table="users",  # a tweets job leaves the users alone
        results_path="s3://aws_default@bucket/results/tweets-1.jsonl",
    )
    lineage = operator.get_openlineage_facets_on_complete(None)
    assert names(lineage.inputs) == [("s3://bucket", "results/tweets-1.jsonl")]
    namespace = f"sqlite://{sqlite_conn}"
    assert names(lineage.outputs) == [(namespace, "main.tweets"), (namespace, "main.xc_audit")]


def test_apply_a_users_job_to_postgres_names_database_schema_and_table(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_XC_POSTGRES", "postgres://app:secret@db.example.com:5433/appdb")
    operator = XComplianceApplyToSqlOperator(
        task_id="apply",
        conn_id="xc_postgres",
        job_type="users",
        table="public.tweets",
        author_id_column="author_id",
        users_table="crm.users",
        results_path="/data/users-1.jsonl",
    )
    lineage = operator.get_openlineage_facets_on_complete(None)
    assert names(lineage.inputs) == [("file", "/data/users-1.jsonl")]
    assert names(lineage.outputs) == [
        ("postgres://db.example.com:5433", "appdb.public.tweets"),
        ("postgres://db.example.com:5433", "appdb.crm.users"),
    ]


def test_a_dry_run_writes_no_dataset(sqlite_conn):
    sql = XComplianceApplyToSqlOperator(
        task_id="apply",
        conn_id="xc_sqlite",
        job_type="tweets",
        table="tweets",
        results_path="/r.jsonl",
        dry_run="True",
    )
    files = XComplianceApplyToFilesOperator(
        task_id="apply_files",
        job_type="tweets",
        results_path="/r.jsonl",
        data_path="/data/tweets/",
        dry_run=True,
    )
    for operator in (sql, files):
        lineage = operator.get_openlineage_facets_on_complete(None)
        assert names(lineage.inputs) == [("file", "/r.jsonl")] and lineage.outputs == []


def test_apply_to_files_writes_the_data_set_and_the_audit():
    operator = XComplianceApplyToFilesOperator(
        task_id="apply_files",
        job_type="tweets",
        results_path="file:///results/tweets-1.jsonl",
        data_path="s3://aws_default@lake/tweets/",
        audit_path="gs://audit_conn@audits/x-compliance/",
        audit_ids="plain",
    )
    lineage = operator.get_openlineage_facets_on_complete(None)
    assert names(lineage.inputs) == [("file", "/results/tweets-1.jsonl")]
    assert names(lineage.outputs) == [("s3://lake", "tweets"), ("gs://audits", "x-compliance")]


# --- hook-level lineage of the writer ----------------------------------------------------------


def test_the_atomic_writer_reports_the_target_not_its_partial_file(tmp_path, monkeypatch):
    from airflow.sdk import ObjectStoragePath

    try:
        from airflow.sdk.lineage import HookLineageCollector
    except ImportError:  # Airflow 3.1
        from airflow.lineage.hook import HookLineageCollector

    collector = HookLineageCollector()
    monkeypatch.setattr(
        "airflow.providers.common.compat.lineage.hook.get_hook_lineage_collector", lambda: collector
    )
    target = ObjectStoragePath((tmp_path / "out" / "results.jsonl").as_uri())
    with atomic_writer(target) as out:
        out.write(b'{"id": "1"}\n')
    assert [info.asset.uri for info in collector.collected_assets.outputs] == [str(target)]
    failed = ObjectStoragePath((tmp_path / "no.jsonl").as_uri())
    with pytest.raises(RuntimeError), atomic_writer(failed) as out:
        out.write(b"x")
        raise RuntimeError("boom")
    assert len(collector.collected_assets.outputs) == 1  # a failed write is no output


WITHOUT_OPENLINEAGE = """
import sys, importlib.abc

class NoOpenLineage(importlib.abc.MetaPathFinder):
    # The OpenLineage client and provider code, as if not installed (Airflow's provider
    # discovery still reads the provider's metadata from its entry point).

    def find_spec(self, name, path=None, target=None):
        blocked = name == "openlineage" or name.startswith(("openlineage.", "airflow.providers.openlineage."))
        if blocked and name != "airflow.providers.openlineage.get_provider_info":
            raise ImportError(f"{name} is not installed (blocked by the test)")
        return None

sys.meta_path.insert(0, NoOpenLineage())
from airflow.sdk import ObjectStoragePath
from airflow_provider_xcompliance.operators.apply import XComplianceApplyToFilesOperator
from airflow_provider_xcompliance.operators.compliance import XComplianceDownloadResultsOperator
from airflow_provider_xcompliance.object_storage import atomic_writer

XComplianceDownloadResultsOperator(task_id="d", job_id="1", results_path="/tmp/r/")
XComplianceApplyToFilesOperator(task_id="a", job_type="tweets", results_path="/r.jsonl", data_path="/d/")
target = ObjectStoragePath(sys.argv[1])
with atomic_writer(target) as out:
    out.write(b"written")
print(open(target.path).read())
assert not [m for m in sys.modules if m.startswith(("openlineage", "airflow.providers.openlineage."))
            and m != "airflow.providers.openlineage.get_provider_info"]
"""


def test_the_provider_works_without_openlineage(tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_OPENLINEAGE, (tmp_path / "out.txt").as_uri()],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("written")
