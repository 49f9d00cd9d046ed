"""The end-to-end demo behind ``./dev demo`` and ``./dev airflow``.

``python -m devtools.demo`` (``./dev demo``) generates an ID file of realistic size and its
ground truth, seeds a demo database table with those tweets (authors, some with geo data),
starts the X API emulator, and runs the ``x_compliance_tweets_apply`` example DAG with
``airflow dags test`` (SQLite, a local folder for object storage): submit, wait, download, and
apply the results to the table. Then it prints where the results are, their summary, the table
before and after, and whether both match the ground truth.

``--standalone`` (``./dev airflow``) instead starts ``airflow standalone`` (scheduler,
dag-processor, triggerer, API server) with the same emulator and example DAGs, for the UI: the
connections are stored in Airflow's database (so the UI lists, tests and edits them), the admin
password is made here and never printed, every component listens on 127.0.0.1 only, and the
executor runs 4 workers.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import secrets
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from airflow_provider_xcompliance.connection import CONNECTION_TYPE, DEFAULT_CONN_ID
from airflow_provider_xcompliance.emulator import XComplianceEmulator, expected_results, generate_dataset
from airflow_provider_xcompliance.emulator.faults import PROFILES, parse_fault_spec
from airflow_provider_xcompliance.results import ResultsSummary

DEMO_TOKEN = "demo-bearer-token-not-a-secret"
DEMO_AUDIT_KEY = "demo-audit-key-not-a-secret"
DEMO_DAG = "x_compliance_tweets_apply"
DEMO_DB_CONN_ID = "x_compliance_demo_db"
PARALLELISM = 4  # LocalExecutor workers (it starts all of them at once; the default is 32)
GEO_EVERY = 5  # one demo tweet in five carries geo data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="./dev demo")
    parser.add_argument(
        "--workdir", type=Path, default=Path(".demo"), help="where everything is kept (default .demo)"
    )
    parser.add_argument("--dags-folder", type=Path, default=Path("example_dags"))
    parser.add_argument(
        "--ids", type=int, default=1_000_000, help="how many tweet IDs to generate (default 1,000,000)"
    )
    parser.add_argument(
        "--speed", type=float, default=120.0, help="emulated time runs this much faster (default 120)"
    )
    parser.add_argument(
        "--standalone", action="store_true", help="start airflow standalone for the UI instead"
    )
    parser.add_argument("--port", type=int, default=8080, help="the Airflow UI's port with --standalone")
    parser.add_argument(
        "--faults",
        choices=PROFILES,
        default="none",
        help="'all' makes the emulator fail like a bad day at X and GCS: 408/429/503 answers "
        "and dropped connections on signed URLs, partial and lost resumable answers, "
        "NoSuchKey right after completion, 503s on job lookups (default none)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="ENDPOINT:KIND[:ARG][xTIMES]",
        help="queue one fault, e.g. upload_session:partial_chunk, download:no_such_keyx3, "
        "create_job:usage_cap (repeatable)",
    )
    parser.add_argument(
        "--usage-capped",
        action="store_true",
        help="answer every API request with X's usage-capped 429 (the run must fail at once)",
    )
    args = parser.parse_args(argv)

    logging.getLogger("airflow_provider_xcompliance.emulator").setLevel(logging.WARNING)
    workdir = args.workdir.resolve()
    data = workdir / "data"
    airflow_home = workdir / "airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)
    datasets = {
        job_type: _dataset(data, job_type, args.ids if job_type == "tweets" else max(args.ids // 10, 1000))
        for job_type in ("tweets", "users")
    }

    with XComplianceEmulator(
        token=DEMO_TOKEN,
        data_dir=workdir / "emulator",
        speed=args.speed,
        processing_seconds=1800,  # a half-hour job: 15 s at the default speed
        ground_truth={job_type: truth for job_type, (_, truth) in datasets.items()},
        fault_profile=args.faults,
        usage_capped=args.usage_capped,
    ) as emulator:
        for spec in args.fault:
            emulator.inject_fault(**parse_fault_spec(spec))
        database = workdir / "demo.db"
        env = _airflow_env(airflow_home, args.dags_folder.resolve(), data, emulator.base_url, database)
        print(f"X API emulator: {emulator.base_url}   Airflow home: {airflow_home}")
        _run(["airflow", "db", "migrate"], env, airflow_home / "migrate.log")
        if args.standalone:
            _store_connections(env, airflow_home, emulator.base_url, database)
            return _standalone(env, args.port, airflow_home)
        before = _seed_tweets_table(database, datasets["tweets"][0])
        status = _dags_test(env, airflow_home, data, datasets["tweets"])
        if status:
            return status
        return _check_table(database, datasets["tweets"][1], before)


def _dataset(data: Path, job_type: str, count: int) -> tuple[Path, Path]:
    ids, truth = data / "ids" / f"{job_type}.txt", data / "truth" / f"{job_type}.csv"
    if not ids.exists() or not truth.exists() or sum(1 for _ in ids.open("rb")) != count:
        ids.parent.mkdir(parents=True, exist_ok=True)
        truth.parent.mkdir(parents=True, exist_ok=True)
        print(f"Generating {count:,} {job_type} IDs and their ground truth in {data}")
        generate_dataset(count, job_type, ids, truth, seed=2026)
    return ids, truth


def _airflow_env(
    airflow_home: Path, dags_folder: Path, data: Path, api_url: str, database: Path
) -> dict[str, str]:
    """What every Airflow command of the demo runs with. The connections come from environment
    variables here (``airflow dags test``); ``--standalone`` stores them in the database instead."""
    connection = {"conn_type": CONNECTION_TYPE, "host": api_url, "password": DEMO_TOKEN}
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        # the waits defer to the triggerer, as we advise for every deployment (README)
        "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
        _conn_env_name(DEFAULT_CONN_ID): json.dumps(connection),
        _conn_env_name(DEMO_DB_CONN_ID): json.dumps({"conn_type": "sqlite", "host": str(database)}),
        "AIRFLOW_VAR_X_COMPLIANCE_AUDIT_KEY": DEMO_AUDIT_KEY,
        "X_COMPLIANCE_DATA_URL": data.as_uri(),
        "X_COMPLIANCE_POLL_INTERVAL": "3",  # emulated jobs take seconds, not hours
    }


def _conn_env_name(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def _run(command: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("w") as output:
        result = subprocess.run(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    if result.returncode:
        sys.exit(f"{' '.join(command)} failed{_reason_in(log)}; see {log}")


def _reason_in(log: Path) -> str:
    """The provider's last error in a log (what a user would look for first), if there is one."""
    errors = [
        line.strip()
        for line in log.read_text(errors="replace").splitlines()
        if "airflow_provider_xcompliance.exceptions." in line
    ]
    return f":\n  {errors[-1][:400]}\n" if errors else ""


def _dags_test(env: dict[str, str], airflow_home: Path, data: Path, dataset: tuple[Path, Path]) -> int:
    ids, truth = dataset
    results_dir = data / "results" / "tweets"
    before = set(results_dir.glob("*.jsonl")) if results_dir.exists() else set()
    log = airflow_home / "dags-test.log"
    print(f"Running the {DEMO_DAG} DAG (airflow dags test); task logs in {log}")
    started = time.monotonic()
    _run(["airflow", "dags", "test", DEMO_DAG], env, log)
    new = sorted(set(results_dir.glob("*.jsonl")) - before, key=lambda p: p.stat().st_mtime)
    if not new:
        print(f"The DAG run produced no results file; see {log}")
        return 1
    results = new[-1]

    summary = ResultsSummary(str(results))
    with results.open("rb") as file:
        while block := file.read(1024 * 1024):
            summary.feed(block)
    summary.finish()
    with ids.open() as id_lines, results.open() as landed:  # compared as streams, line by line
        expected = expected_results((line.strip() for line in id_lines), "tweets", ground_truth=truth)
        matches = all(
            a is not None and b is not None and json.loads(a) == b
            for a, b in itertools.zip_longest(landed, expected)
        )

    print(f"\nDone in {time.monotonic() - started:.0f} s. Results: {results}")
    checked = sum(1 for _ in ids.open("rb"))
    print(f"  {checked:,} tweet IDs checked; {summary.lines:,} result lines (IDs that need action)")
    for reason, count in sorted(summary.by_reason.items(), key=lambda item: -item[1]):
        print(f"  {reason:<12} {count:>9,}")
    print(f"  matches the ground truth line for line: {'yes' if matches else 'NO'}")
    return 0 if matches else 1


def _seed_tweets_table(database: Path, ids: Path) -> dict[str, int]:
    """The demo's data set: a ``tweets`` table holding every checked tweet, made anew each run."""
    database.unlink(missing_ok=True)
    with sqlite3.connect(database) as db:
        db.execute(
            "CREATE TABLE tweets (id INTEGER PRIMARY KEY, author_id INTEGER, text TEXT, "
            "geo_lat REAL, geo_lon REAL, place_id TEXT)"
        )
        with ids.open() as lines:
            rows = (
                (
                    int(line),
                    10_000 + n % 5_000,
                    f"tweet {n}",
                    *((52.5 + n % 7, 13.4, f"place{n % 97}") if n % GEO_EVERY == 0 else (None, None, None)),
                )
                for n, line in enumerate(lines)
            )
            db.executemany("INSERT INTO tweets VALUES (?, ?, ?, ?, ?, ?)", rows)
        counts = _table_counts(db)
    db.close()
    print(f"Demo table {database}: {counts['tweets']:,} tweets, {counts['with_geo']:,} with geo data")
    return counts


def _table_counts(db: sqlite3.Connection) -> dict[str, int]:
    tweets, with_geo = db.execute("SELECT COUNT(*), COUNT(geo_lat) FROM tweets").fetchone()
    return {"tweets": tweets, "with_geo": with_geo}


def _check_table(database: Path, truth: Path, before: dict[str, int]) -> int:
    """The table after the apply task, against what the ground truth says must have changed."""
    to_delete, to_scrub = set(), set()
    with truth.open() as rows:
        for line in rows:
            record_id, _, reason = line.strip().partition(",")
            if record_id.isdigit():
                (to_scrub if reason == "scrub_geo" else to_delete).add(int(record_id))
    to_scrub -= to_delete
    with sqlite3.connect(database) as db:
        after = _table_counts(db)
        ids_left = {row[0] for row in db.execute("SELECT id FROM tweets")}
        geo_left = {
            row[0]
            for row in db.execute(
                "SELECT id FROM tweets WHERE geo_lat IS NOT NULL "
                "OR geo_lon IS NOT NULL OR place_id IS NOT NULL"
            )
        }
        audit_rows = db.execute("SELECT COUNT(*) FROM x_compliance_audit").fetchone()[0]
    db.close()
    expected_tweets = before["tweets"] - len(to_delete)
    ok = (
        not (ids_left & to_delete)
        and not (geo_left & to_scrub)
        and after["tweets"] == expected_tweets
        and to_scrub <= ids_left
    )
    print(f"  table before: {before['tweets']:,} tweets, {before['with_geo']:,} with geo data")
    print(
        f"  table after:  {after['tweets']:,} tweets, {after['with_geo']:,} with geo data; "
        f"{audit_rows:,} audit rows (keyed hashes, no plain IDs)"
    )
    print(
        f"  deleted {before['tweets'] - after['tweets']:,} (expected {len(to_delete):,}); "
        f"geo-scrubbed tweets kept: {len(to_scrub & ids_left):,} of {len(to_scrub):,}, none with geo left: "
        f"{'yes' if not geo_left & to_scrub else 'NO'}"
    )
    print(f"  the table matches the ground truth: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


def _store_connections(env: dict[str, str], airflow_home: Path, api_url: str, database: Path) -> None:
    """Put the demo's connections in Airflow's database (overwriting those of an earlier run:
    the emulator's port changes), in place of the environment variables, which the UI neither
    lists nor can test or edit. The emulator's port is stored in the port field too: the UI's
    Test button sends a connection's port and the API refuses a test whose port differs."""
    url = urlsplit(api_url)
    connections = {
        DEFAULT_CONN_ID: {
            "conn_type": CONNECTION_TYPE,
            "host": f"{url.scheme}://{url.hostname}",
            "port": url.port,
            "password": DEMO_TOKEN,
            "description": "The X API emulator of ./dev airflow",
        },
        DEMO_DB_CONN_ID: {
            "conn_type": "sqlite",
            "host": str(database),
            "description": "The demo's tweets table",
        },
    }
    for conn_id in connections:
        env.pop(_conn_env_name(conn_id), None)
    file = airflow_home / "demo-connections.json"
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as output:
        json.dump(connections, output)
    try:
        _run(
            ["airflow", "connections", "import", "--overwrite", str(file)],
            env,
            airflow_home / "connections.log",
        )
    finally:
        file.unlink(missing_ok=True)


def _admin_password_file(airflow_home: Path) -> Path:
    """The simple auth manager's password file, with a password for ``admin`` made here. When the
    file already holds one, ``airflow standalone`` does not generate one and print it to its log."""
    path = airflow_home / "simple_auth_manager_passwords.json.generated"
    try:
        passwords = json.loads(path.read_text())
    except (OSError, ValueError):
        passwords = {}
    if not isinstance(passwords, dict) or not passwords.get("admin"):
        passwords = {**(passwords if isinstance(passwords, dict) else {}), "admin": secrets.token_urlsafe(16)}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as output:
            output.write(json.dumps(passwords) + "\n")
    path.chmod(0o600)
    return path


def _loopback_only_airflow(airflow_home: Path) -> Path:
    """A folder whose ``airflow`` runs the real one, adding ``--skip-serve-logs`` to the scheduler
    and the triggerer: their log servers listen on every interface (3.3.2 hard-codes the host),
    and the API server reads the task and trigger logs from the local files anyway."""
    real = shlex.quote(str(Path(sys.executable).parent / "airflow"))
    folder = airflow_home / "bin"
    folder.mkdir(exist_ok=True)
    shim = folder / "airflow"
    shim.write_text(
        "#!/bin/sh\n"
        "# Written by devtools/demo.py: no log server on 0.0.0.0.\n"
        'case "$1" in\n'
        f'  scheduler|triggerer) exec {real} "$@" --skip-serve-logs ;;\n'
        "esac\n"
        f'exec {real} "$@"\n'
    )
    shim.chmod(0o755)
    return folder


def _standalone(env: dict[str, str], port: int, airflow_home: Path) -> int:
    env = {
        **env,
        "PATH": f"{_loopback_only_airflow(airflow_home)}{os.pathsep}{env['PATH']}",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
    }
    password_file = _admin_password_file(airflow_home)
    print(f"Starting Airflow on http://127.0.0.1:{port} (Ctrl-C stops everything)")
    print(f"Login: admin, password in {password_file}")
    print(f"Connection {DEFAULT_CONN_ID} (type {CONNECTION_TYPE}): the emulator, in Airflow's database")
    # Its own process group, stopped with SIGTERM: standalone's components ignore a plain SIGINT.
    process = subprocess.Popen(["airflow", "standalone"], env=env, start_new_session=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C, even when started in the background
    try:
        return process.wait()
    except (KeyboardInterrupt, SystemExit):
        return 0
    finally:
        _stop_group(process)


def _stop_group(process: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            process.poll()
            time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
