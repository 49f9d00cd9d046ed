"""What the DAG factories give their tasks: the operators' deferrable default, retries with backoff."""

import inspect
from datetime import timedelta

import pytest
from airflow.sdk import DAG

from airflow_provider_xcompliance.dags import compliance_dag, compliance_task_group
from airflow_provider_xcompliance.sensors.compliance import XComplianceJobSensor


def _group_tasks(dag: DAG) -> dict:
    return {task.task_id.split(".")[-1]: task for task in dag.tasks}


def test_deferrable_follows_the_operators_default_unless_given():
    operators_default = inspect.signature(XComplianceJobSensor.__init__).parameters["deferrable"].default
    with DAG("follows", schedule=None) as follows:
        compliance_task_group("tweets", "file:///ids.txt", "file:///out/")
    with DAG("forced", schedule=None) as forced:
        compliance_task_group("tweets", "file:///ids.txt", "file:///out/", deferrable=not operators_default)
    for name in ("submit", "wait"):
        assert _group_tasks(follows)[name].deferrable is operators_default
        assert _group_tasks(forced)[name].deferrable is (not operators_default)


def test_tasks_retry_with_growing_delays_by_default():
    dag = compliance_dag("d", "users", "file:///ids.txt", "file:///out/")
    for task in dag.tasks:
        assert task.retries == 2, task.task_id
        assert task.retry_delay == timedelta(minutes=1)
        assert task.retry_exponential_backoff  # True on 3.1, a multiplier of 2.0 from 3.2 on
        assert task.max_retry_delay == timedelta(minutes=30)


@pytest.mark.parametrize("dag_retries", [0, 5])
def test_the_dags_default_args_win_over_the_groups_retries(dag_retries):
    with DAG("own", schedule=None, default_args={"retries": dag_retries}) as dag:
        compliance_task_group("tweets", "file:///ids.txt", "file:///out/", retries=7)
    assert {task.retries for task in dag.tasks} == {dag_retries}


def test_the_groups_retries_can_be_set():
    with DAG("set", schedule=None) as dag:
        compliance_task_group("tweets", "file:///ids.txt", "file:///out/", retries=0)
    assert {task.retries for task in dag.tasks} == {0}
