"""Self-test of tests/support: real ``airflow dags test`` on SQLite, and ObjectStoragePath in the
Airflow environment against a real SeaweedFS (the servers alone: tests/integration/
test_support_servers.py; the helpers: tests/unit/test_support.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.support import (
    AirflowEnv,
    SeaweedS3,
)

SUCCESS_DAG = """
import pendulum
from airflow.sdk import Asset, dag, task
from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync

PROBE_ASSET = Asset(name="support_probe_asset", uri="s3://support-probe/asset")


@dag(dag_id="support_probe", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def support_probe():
    @task(outlets=[PROBE_ASSET])
    def produce(**context):
        n = context["dag_run"].conf.get("n", 0)
        context["outlet_events"][PROBE_ASSET].extra = {"n": n, "kind": "probe"}
        print("SUPPORT-PROBE-LOG-MARKER")
        return {"n": n, "items": [1, 2, 3], "text": "héllo"}

    wait = DateTimeSensorAsync(
        task_id="wait",
        target_time="{{ macros.datetime.utcnow() + macros.timedelta(seconds=2) }}",
    )
    produce() >> wait


support_probe()
"""

FAILING_DAG = """
import pendulum
from airflow.sdk import dag, task


@dag(dag_id="support_probe_fail", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def support_probe_fail():
    @task
    def boom():
        raise ValueError("support probe failure")

    @task
    def after():
        return 1

    boom() >> after()


support_probe_fail()
"""


def test_object_storage_path_roundtrip(airflow_env: AirflowEnv, seaweed: SeaweedS3, s3_bucket: str):
    c = seaweed.client()
    c.put_object(Bucket=s3_bucket, Key="in/from-boto3.txt", Body=b"written by boto3")
    code = textwrap.dedent(
        f"""
        from airflow.sdk import ObjectStoragePath
        base = ObjectStoragePath("s3://seaweed_test@{s3_bucket}/")
        out = base / "out" / "from-airflow.jsonl"
        with out.open("wb") as f:
            f.write(b'{{"id": "1"}}\\n')
        print("EXISTS", out.exists())
        print("READ", (base / "in" / "from-boto3.txt").read_text())
        """
    )
    cp = airflow_env.python(code, env=seaweed.connection_env("seaweed_test"), timeout=120)
    assert cp.returncode == 0, cp.stdout[-3000:]
    assert "EXISTS True" in cp.stdout
    assert "READ written by boto3" in cp.stdout
    body = c.get_object(Bucket=s3_bucket, Key="out/from-airflow.jsonl")["Body"].read()
    assert body == b'{"id": "1"}\n'


def test_dags_test_success_xcom_deferral_assets(airflow_env: AirflowEnv, tmp_path: Path):
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "support_probe.py").write_text(SUCCESS_DAG)
    result = airflow_env.dags_test("support_probe", dags, conf={"n": 7}, timeout=240)
    result.assert_success()
    assert result.returncode == 0
    assert result.state == "success"
    assert result.run_id and result.run_id.startswith("manual__")
    assert result.dag_run()["conf"] == {"n": 7}
    assert result.task_states() == {"produce": "success", "wait": "success"}
    assert result.xcom("produce") == {"n": 7, "items": [1, 2, 3], "text": "héllo"}
    assert result.xcom("produce", key="nope", default=None) is None
    with pytest.raises(KeyError):
        result.xcom("wait")
    # deferral: the sensor deferred and resumed, the plain task never deferred
    assert result.was_deferred("wait")
    assert not result.was_deferred("produce")
    if result.task_events("wait"):  # Airflow 3.2+ log each state change
        assert result.task_state_history("wait") == ["running", "deferred", "running", "success"]
        assert result.task_state_history("produce") == ["running", "success"]
    else:  # 3.1: the states of the tries
        assert result.task_state_history("wait") == result.task_state_history("produce") == ["success"]
    assert result.triggers("wait")[0]["classpath"].endswith("DateTimeTrigger")
    # assets
    events = result.asset_events("s3://support-probe/asset")
    assert len(events) == 1
    assert events[0]["extra"] == {"n": 7, "kind": "probe"}
    assert events[0]["asset_name"] == "support_probe_asset"
    assert result.asset_events("support_probe_asset") == events
    assert result.asset_events("s3://other/asset") == []
    # logs
    assert "SUPPORT-PROBE-LOG-MARKER" in result.logs_text()
    assert result.output_path and result.output_path.read_text() == result.output


def test_dags_test_failure_is_reported(airflow_env: AirflowEnv, tmp_path: Path):
    dags = tmp_path / "other_dags"
    dags.mkdir()
    (dags / "support_probe_fail.py").write_text(FAILING_DAG)
    result = airflow_env.dags_test("support_probe_fail", dags, timeout=240)
    assert result.returncode != 0
    assert result.state == "failed"
    assert result.failed and not result.succeeded
    assert result.task_states() == {"boom": "failed", "after": "upstream_failed"}
    assert "support probe failure" in result.logs_text()
    with pytest.raises(AssertionError, match="did not succeed"):
        result.assert_success()


def test_dags_test_unknown_dag(airflow_env: AirflowEnv, tmp_path: Path):
    result = airflow_env.dags_test("no_such_dag", tmp_path, timeout=120)
    assert result.returncode != 0
    assert result.run_id is None and result.state is None
    assert result.task_states() == {}
