"""The test tiers, and the fixtures of every tier: a migrated throw-away Airflow, a real SeaweedFS
S3 server, a real PostgreSQL server, ``./dev airflow``, and the hook on an X API emulator.

A test's tier is the folder it is in (``./dev test -m unit`` runs tests/unit; markers registered in
pyproject.toml):

    tests/unit/                  unit          no servers: a socket that listens or connects fails the test
    tests/emulator/              emulator      the X API emulator over loopback HTTP
    tests/integration/           integration   real SeaweedFS (S3) and PostgreSQL servers
    tests/system/                airflow       a real Airflow: ``airflow dags test``, ``./dev airflow``
    tests/system/distributed/    airflow, distributed   Airflow with the CeleryExecutor, Redis, PostgreSQL
    tests/system/browser/        airflow, browser       the Airflow UI in Chromium (Playwright)

A test may use the fixtures of its own tier and of the tiers below it; one that uses a fixture of a
higher tier (a unit test asking for ``postgres``, say) fails collection, naming the folder it
belongs in. So does a test outside the tier folders, or one marked with another folder's tier.

Nothing here imports Airflow at import time, and nothing global is changed: Airflow runs in
subprocesses whose environment ``AirflowEnv.env()`` builds.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_xcompliance.emulator import XComplianceEmulator
from tests.support import AirflowEnv, SeaweedS3
from tests.support.dev_airflow import DevAirflow
from tests.support.hook_on_emulator import TOKEN, connect
from tests.support.parallel import make_run_dir, scheduler, write_groups
from tests.support.postgres import PostgresServer, running_postgres

TESTS = Path(__file__).parent

# tier folder -> (its rank, the markers its tests get)
_FOLDERS = {
    "unit": (0, ("unit",)),
    "emulator": (1, ("emulator",)),
    "integration": (2, ("integration",)),
    "system": (3, ("airflow",)),
}
_SYSTEM_KINDS = ("distributed", "browser")  # sub-folders of tests/system, and their markers
_TIERS = ("unit", "emulator", "airflow", "integration", *_SYSTEM_KINDS)
# fixture -> the tier folder a test that uses it (directly or through another fixture) must be in
_FOLDER_BY_FIXTURE = {
    "emu": "emulator",
    "make_emulator": "emulator",
    "emulator": "emulator",
    "hook": "emulator",
    "seaweed": "integration",
    "s3_bucket": "integration",
    "postgres": "integration",
    "airflow_env": "system",
    "dev_airflow": "system",
    "stopped_dev_airflow": "system",
}
# Tests that share one expensive instance run on one pytest-xdist worker (--dist loadgroup), one
# after the other: ./dev airflow is one instance for the standalone and the browser tests (group
# "dev_airflow"), and the Celery clusters (one per module, each module's tests in order) are kept
# from running at once (group "distributed").


class TierError(AssertionError):
    """A unit test reached for a server."""


def _place(path: Path) -> tuple[str, str | None] | None:
    """(tier folder, system kind or None) of a test file, or None outside the tier folders."""
    parts = path.resolve().relative_to(TESTS).parts
    if len(parts) < 2 or parts[0] not in _FOLDERS:
        return None
    kind = parts[1] if parts[0] == "system" and len(parts) > 2 and parts[1] in _SYSTEM_KINDS else None
    return parts[0], kind


def _misplaced(item: pytest.Item) -> str | None:
    """Why ``item`` is in the wrong folder, or None."""
    place = _place(item.path)
    if place is None:
        return f"outside the tier folders: put it in tests/{{{','.join(_FOLDERS)}}}/"
    folder, kind = place
    rank = _FOLDERS[folder][0]
    fixtures = set(getattr(item, "fixturenames", ()))
    for fixture, needs in _FOLDER_BY_FIXTURE.items():
        if fixture in fixtures and _FOLDERS[needs][0] > rank:
            return f"uses the fixture {fixture!r}: it belongs in tests/{needs}/, not tests/{folder}/"
    allowed = set(_FOLDERS[folder][1]) | ({kind} if kind else set())
    marked = {mark.name for mark in item.iter_markers() if mark.name in _TIERS} - allowed
    if marked:
        return (
            f"is marked {', '.join(sorted(marked))}, which tests/{folder}/"
            f"{kind + '/' if kind else ''} is not: the folder gives the tier, move the test instead"
        )
    return None


def pytest_configure(config: pytest.Config) -> None:
    # The folder the pytest-xdist workers of this run share (the ports handed out, the groups),
    # made by the controller before they start (they inherit its environment).
    make_run_dir(config)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """``--dist loadgroup``: the groups below, each on one worker (tests/support/parallel.py)."""
    return scheduler(config, log) if config.getvalue("dist") == "loadgroup" else None


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object):
    """A test in the wrong folder is an error collecting its module (under pytest-xdist too)."""
    made = yield
    wrong = [
        f"{item.nodeid} {why}"
        for item in (made if isinstance(made, list) else [made])
        if isinstance(item, pytest.Item) and (why := _misplaced(item))
    ]
    if wrong:
        raise collector.CollectError(
            "in the wrong tier folder (tests/conftest.py says which folder is which tier):\n"
            + "\n".join(wrong)
        )
    return made


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups (--dist loadgroup)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    groups: dict[str, str] = {}
    for item in items:
        folder, kind = _place(item.path)  # type: ignore[misc]  # none is misplaced
        for tier in _FOLDERS[folder][1] + ((kind,) if kind else ()):
            item.add_marker(tier)
        fixtures = getattr(item, "fixturenames", ())
        group = (
            "dev_airflow" if "dev_airflow" in fixtures else "distributed" if kind == "distributed" else None
        )
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
            groups[item.nodeid] = group
    if hasattr(config, "workerinput"):
        write_groups(groups)

    # The tests of ./dev airflow (one instance, started on first use) run one after the other and
    # those of it stopped right after them, so that it does not idle beside the other tests; they
    # come first, the longest stretch of the run (pytest-xdist hands out its largest group first).
    def dev_airflow_phase(item: pytest.Item) -> int:
        fixtures = getattr(item, "fixturenames", ())
        if "stopped_dev_airflow" in fixtures:
            return 1
        return 0 if "dev_airflow" in fixtures else 2

    items.sort(key=dev_airflow_phase)  # stable: the order within each phase is kept


@pytest.fixture(autouse=True)
def _unit_tests_reach_no_server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """In tests/unit, a socket that listens (a server) or connects (to one) fails the test."""
    if request.node.get_closest_marker("unit") is None:
        return

    def refuse(what: str):
        def refused(sock: socket.socket, *args: object) -> None:
            where = sock.getsockname() if what == "listens on" else args[0] if args else "?"
            raise TierError(
                f"{request.node.nodeid} {what} {where}: a unit test reaches no server; a test that "
                "needs one belongs in tests/emulator, tests/integration or tests/system"
            )

        return refused

    monkeypatch.setattr(socket.socket, "listen", refuse("listens on"))
    monkeypatch.setattr(socket.socket, "connect", refuse("connects to"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("connects to"))


# ---------------------------------------------------------------------------- emulator
@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[XComplianceEmulator]:
    """An X API emulator taking the bearer token ``TOKEN``; emulated time runs 100x faster."""
    with XComplianceEmulator(
        token=TOKEN, data_dir=tmp_path / "emulator", speed=100, processing_seconds=30
    ) as emu:
        yield emu


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch, emulator: XComplianceEmulator):
    """The hook on the default connection, at ``emulator``."""
    return connect(monkeypatch, emulator)


# ---------------------------------------------------------------------------- integration
@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A SeaweedFS server with S3 gateway, started on first use and stopped at session end
    (one per pytest-xdist worker)."""
    server = SeaweedS3(tmp_path_factory.mktemp("seaweed"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(seaweed: SeaweedS3) -> str:
    """A fresh, uniquely named bucket in the session's SeaweedFS server."""
    return seaweed.create_bucket()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server on a free 127.0.0.1 port with database ``xc_test``, for the session
    (one per pytest-xdist worker)."""
    with running_postgres() as server:
        yield server


# ---------------------------------------------------------------------------- system
@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> AirflowEnv:
    """An AIRFLOW_HOME with a migrated SQLite DB, shared by the session (migrated once; one per
    pytest-xdist worker)."""
    env = AirflowEnv(tmp_path_factory.mktemp("airflow_home"))
    env.migrate()
    return env


@pytest.fixture(scope="session")
def dev_airflow(tmp_path_factory: pytest.TempPathFactory, seaweed: SeaweedS3) -> Iterator[DevAirflow]:
    """``./dev airflow`` (demo.py --standalone: the emulator, airflow standalone, the example DAGs)
    on a free port, logged in over REST; started once for the browser and the standalone tests
    (all of them on one pytest-xdist worker). Its environment holds the ``aws`` connection
    ``seaweed`` to the session's SeaweedFS server."""
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
    """The same ``./dev airflow``, stopped (the tests that use it run right after the others of it)."""
    dev_airflow.stop()
    return dev_airflow
