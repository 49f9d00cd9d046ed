"""Root fixtures: a migrated throw-away Airflow and a real SeaweedFS S3 server.

Nothing here imports Airflow at import time, and nothing global is changed: Airflow runs in
subprocesses whose environment ``AirflowEnv.env()`` builds.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import AirflowEnv, SeaweedS3
from tests.support.dev_airflow import DevAirflow
from tests.support.postgres import PostgresServer, running_postgres

# Test tiers, as markers given here from what a test uses, so no test file has to remember them:
# ./dev test -m unit runs the fast tier. Registered in pyproject.toml.
_TIERS = ("unit", "emulator", "airflow", "integration", "distributed", "browser")
_TIER_BY_FIXTURE = {
    "airflow_env": "airflow",
    "dev_airflow": "airflow",
    "seaweed": "integration",
    "s3_bucket": "integration",
    "postgres": "integration",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        tiers = {tier for fixture, tier in _TIER_BY_FIXTURE.items() if fixture in fixtures}
        tiers |= {mark.name for mark in item.iter_markers() if mark.name in _TIERS}
        if not tiers:
            tiers.add("unit" if item.path.parent.name == "unit" else "emulator")
        for tier in tiers:
            item.add_marker(tier)

    # The tests of ./dev airflow (one instance, started on first use) run last, one after the other,
    # so that it does not idle beside the other tests; those of it stopped come at the very end.
    def dev_airflow_phase(item: pytest.Item) -> int:
        fixtures = getattr(item, "fixturenames", ())
        return 2 if "stopped_dev_airflow" in fixtures else 1 if "dev_airflow" in fixtures else 0

    items.sort(key=dev_airflow_phase)  # stable: the order within each phase is kept


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> AirflowEnv:
    """An AIRFLOW_HOME with a migrated SQLite DB, shared by the session (migrated once)."""
    env = AirflowEnv(tmp_path_factory.mktemp("airflow_home"))
    env.migrate()
    return env


@pytest.fixture(scope="session")
def dev_airflow(tmp_path_factory: pytest.TempPathFactory, seaweed: SeaweedS3) -> Iterator[DevAirflow]:
    """``./dev airflow`` (demo.py --standalone: the emulator, airflow standalone, the example DAGs)
    on a free port, logged in over REST; started once for the browser and the standalone tests.
    Its environment holds the ``aws`` connection ``seaweed`` to the session's SeaweedFS server."""
    server = DevAirflow(tmp_path_factory.mktemp("dev_airflow"), seaweed.connection_env("seaweed"))
    server.start()
    try:
        server.wait_ready()
        server.login()
        yield server
    finally:
        server.stop()


@pytest.fixture
def stopped_dev_airflow(dev_airflow: DevAirflow) -> DevAirflow:
    """The same ``./dev airflow``, stopped (the tests that use it are run last)."""
    dev_airflow.stop()
    return dev_airflow


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A SeaweedFS server with S3 gateway, started on first use and stopped at session end."""
    server = SeaweedS3(tmp_path_factory.mktemp("seaweed"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server on a free 127.0.0.1 port with database ``xc_test``, for the session."""
    with running_postgres() as server:
        yield server


@pytest.fixture
def s3_bucket(seaweed: SeaweedS3) -> str:
    """A fresh, uniquely named bucket in the session's SeaweedFS server."""
    return seaweed.create_bucket()
