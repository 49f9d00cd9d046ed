"""How far applying compliance results (step 5) is from a hand-written baseline, as figures.

    ./dev bench apply                # 10M stored tweets, 600k result lines (about 6 minutes on
                                     #   2 cores, plus about 3 minutes to generate the data the first time)
    ./dev bench apply --quick        # 1M tweets, 60k result lines (about a minute)
    .venv/bin/python benchmarks/apply.py --rows 2M --results 100k --runs 3 --only sql

Nothing is asserted: these machines are noisy, so it prints figures and the conditions.

The stored tweets have realistic 19-digit IDs (snowflakes over 100 days from 2022-01-01), one in
five with geo data. The results file is JSON Lines as X sends it (``{"id": "…", "action":
"delete", "created_at": "…", "reason": "…"}``), its IDs drawn from the stored tweets: about 15%
``scrub_geo`` (drawn among the tweets with geo), the rest ``deleted``/``suspended``/
``protected``/``bounced``, plus a few duplicated IDs (some with another reason) and a few IDs
that are not stored. Both parts read the same results file.

PostgreSQL (a throw-away server from ``tests/support/postgres.py``; its settings for tests plus
``max_wal_size`` 4GB, so that no checkpoint falls inside a measurement). The table
``tweets(id BIGINT PRIMARY KEY, author_id, text, geo_lat, geo_lon, place_id)`` is generated once
per run of this script with ``generate_series`` into a template table; every measurement gets a
fresh copy (``CREATE TABLE AS`` + primary key + ``VACUUM ANALYZE`` + ``CHECKPOINT``, not timed):

  psql (baseline)           ``psql -f``: ``\\copy`` of the results file's lines into a TEMP table,
                            then in one transaction one ``DELETE … WHERE id IN (SELECT …)`` of the
                            IDs whose reason is not scrub_geo and one ``UPDATE … SET geo_lat = NULL,
                            geo_lon = NULL, place_id = NULL WHERE id IN (SELECT …)`` of the others
                            (the JSON is parsed by the server, ``line::jsonb``); no audit
  SqlApplier                the provider: ``SqlApplier(conn, "%s", ChangeRules("tweets"),
                            SqlTarget(table="tweets", geo_columns=(…), audit_table="xc_audit"),
                            audit=AuditIdentity("hmac", key)).run(results)`` over a psycopg 3
                            connection (what Airflow's PostgresHook hands out with SQLAlchemy 2)
  SqlApplier, no audit      the same without an audit table: what the audit rows cost
  SqlApplier, psycopg2      the same as the provider row over psycopg2 (PostgresHook's driver
                            with SQLAlchemy 1.4)

Parquet. A data set of the same tweets (id, author_id, text, created_at, geo_lat, geo_lon) in
``date=YYYY-MM-DD/part-0.parquet`` (one folder per day, snappy, written by pyarrow), generated
once into ``.bench/``; every provider run gets a fresh copy of it (not timed):

  DuckDB (baseline)         ``COPY (SELECT … FROM read_parquet(…) LEFT JOIN (the results, read
                            with read_json and reduced per ID) … WHERE not deleted, geo columns
                            nulled where scrubbed) TO '…' (FORMAT PARQUET, PARTITION_BY (date))``
                            of the whole data set into a new folder, ``SET memory_limit='1GB'``,
                            DuckDB's default threads (one per core)
  apply_to_files            the provider: ``apply_to_files(results, ChangeRules("tweets"), data,
                            format="parquet", geo_fields=("geo_lat", "geo_lon"),
                            partition_template="date={created_at:%Y-%m-%d}")``, rewriting the
                            changed objects in place (here every object holds flagged tweets)

Every Python measurement (the provider rows and DuckDB) runs in a fresh child process, so that
its peak RSS (``ru_maxrss``) and its RSS growth (peak minus RSS just before the call, after the
imports and the connection) are its own; psql runs under ``/usr/bin/time -v`` (its own maximum
resident set size; growth is not known). Time is wall-clock of the call only (not process
start-up, imports or connecting), except for psql, which is timed as a whole process (start-up
and connecting take about 10 ms). "vs baseline" is the row's seconds divided by the baseline's
(2.00x = twice as long as the baseline). "client CPU" is the CPU time the measured process spent
(user + system, all threads) as a percentage of its wall time; "server CPU" is what all of
PostgreSQL's processes spent meanwhile (PostgreSQL's memory is not in the RSS columns); "others
CPU" is what the rest of the machine spent during the call (from /proc/stat): well above 0%,
other work shared the 2 cores and inflated the row's time. "rows after" and "geo rows after"
count the table or data set after the run, with the expected figures (from the generated
results) in the heading: every row should show them. Each figure is the BEST (fastest) of
``--runs`` runs (default 1); peak RSS and growth are the largest seen.

Under each table, where the provider's time went: wall seconds of its internal steps, measured
by wrapping its private methods in the child (a step whose name no longer exists is left out;
"of which" is a part of another step, with its number of calls).

A measurement that fails prints ``failed: <error>`` in its row and the benchmark goes on.
Generated data (the results file, the Parquet data set) is kept in ``.bench/`` and reused while
the parameters are the same; copies and outputs live in a temporary directory under ``.bench/``
that is removed at the end. Options of other benchmarks (``./dev bench`` passes its arguments to
every benchmark) are ignored.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _measure import CLOCK_TICKS, best, cpu_self, one_line, parse_size, peak_mib, rss_mib

from airflow_provider_xcompliance.apply import files as apply_files
from airflow_provider_xcompliance.apply import parquet as apply_parquet
from airflow_provider_xcompliance.apply.files import apply_to_files
from airflow_provider_xcompliance.apply.sql import SqlApplier
from airflow_provider_xcompliance.apply.sql_tables import SqlTarget

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".bench"
DATA_VERSION = 1  # part of the generated files' names: bump it when the generators change
CHILD_TIMEOUT = 3600  # seconds for one measurement before it is reported as failed

# The stored tweets: row i (1..rows) is created at T0 + (i - 1) * SPAN / rows (ms) and has the
# snowflake ID ((created - TWEPOCH) << 22) | (i * 2654435761 mod 2**22), so IDs are 19 digits,
# unique and increasing; rows whose i is a multiple of 5 carry geo data. The SQL and the Python
# generators below compute the same IDs.
TWEPOCH = 1288834974657
T0 = 1640995200000  # 2022-01-01T00:00:00Z
DAYS = 100
DAY_MS = 86_400_000
SPAN = DAYS * DAY_MS
GEO_EVERY = 5
DELETE_REASONS = ("deleted", "suspended", "protected", "bounced")
DELETE_WEIGHTS = (0.60, 0.20, 0.12, 0.08)
SQL_GEO = ("geo_lat", "geo_lon", "place_id")
PARQUET_GEO = ("geo_lat", "geo_lon")
AUDIT_KEY = b"benchmark-audit-key-0123456789abcdef"
LOREM = (
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt "
    "ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco "
    "laboris nisi ut aliquip ex ea commodo consequat."
)


# --- helpers shared by the parent and the children -------------------------------------------


def cpu_machine() -> float:
    """CPU seconds all processes of the machine have used so far (every core, not idle)."""
    with open("/proc/stat") as stat:
        fields = [int(f) for f in stat.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLOCK_TICKS  # all but idle and iowait


def label(count: int) -> str:
    if count % 1_000_000 == 0:
        return f"{count // 1_000_000}M"
    return f"{count // 1_000}k" if count % 1_000 == 0 else str(count)


# --- data -------------------------------------------------------------------------------------


def snowflake(i: int, rows: int) -> tuple[int, int]:
    """Created-at (ms) and ID of row ``i`` of ``rows``."""
    created = T0 + (i - 1) * SPAN // rows
    return created, ((created - TWEPOCH) << 22) | (i * 2654435761 % (1 << 22))


def sql_generate(table: str, rows: int) -> str:
    """The rows of ``snowflake``, generated by the server."""
    return f"""
        CREATE TABLE {table} (id BIGINT, author_id BIGINT, text TEXT, geo_lat DOUBLE PRECISION,
                              geo_lon DOUBLE PRECISION, place_id TEXT);
        INSERT INTO {table}
        SELECT ((({T0 - TWEPOCH}::bigint + ((i - 1) * {SPAN}::bigint) / {rows}) << 22)
                  | ((i * 2654435761) % 4194304)),
               100000000 + (i * 48271) % 1400000000,
               'Tweet ' || i || ': ' || substr('{LOREM}', 1 + (i % 50)::int, 40 + (i % 90)::int),
               CASE WHEN i % {GEO_EVERY} = 0 THEN ((i * 7919) % 180000) / 1000.0 - 90 END,
               CASE WHEN i % {GEO_EVERY} = 0 THEN ((i * 104729) % 360000) / 1000.0 - 180 END,
               CASE WHEN i % {GEO_EVERY} = 0 THEN substr(md5(i::text), 1, 16) END
        FROM generate_series(1::bigint, {rows}::bigint) AS i;
    """


def results_file(rows: int, count: int) -> tuple[Path, dict]:
    """``.bench/apply-v<N>-results-<rows>-<count>.jsonl`` and what applying it must leave
    (seed 1), generated once and reused."""
    import random

    path = BENCH_DIR / f"apply-v{DATA_VERSION}-results-{rows}-{count}.jsonl"
    expected_path = path.with_suffix(".expected.json")
    if path.exists() and expected_path.exists():
        return path, json.loads(expected_path.read_text())
    print(
        f"generating {count:,} result lines into {path.relative_to(ROOT)} (once; reused later) …", flush=True
    )
    rng = random.Random(1)
    absent = max(1, count // 20_000)
    duplicates = max(1, count // 10_000)
    unique = count - absent - duplicates
    if not 1 <= unique <= rows:
        sys.exit(f"--results {count} does not fit --rows {rows}")
    picked = sorted(rng.sample(range(1, rows + 1), unique))
    lines: list[tuple[int, int, str]] = []  # (id, created ms, reason)
    deleted: set[int] = set()  # row numbers that end up deleted
    geo_flagged = 0  # stored rows with geo that lose it (scrubbed or deleted)
    for i in picked:
        created, record_id = snowflake(i, rows)
        has_geo = i % GEO_EVERY == 0
        geo_flagged += has_geo
        if has_geo and rng.random() < 0.75:  # ~15% of all lines: 3/4 of the 1/5 with geo
            reason = "scrub_geo"
        else:
            reason = rng.choices(DELETE_REASONS, DELETE_WEIGHTS)[0]
            deleted.add(i)
        lines.append((record_id, created, reason))
    # a few duplicated IDs (every other one with another reason: delete wins over scrub_geo)
    for number, at in enumerate(rng.sample(range(unique), duplicates)):
        record_id, created, reason = lines[at]
        if number % 2:
            reason = "deleted" if reason == "scrub_geo" else "scrub_geo"
            if reason == "deleted":
                deleted.add(picked[at])
        lines.append((record_id, created, reason))
    # a few IDs that are not stored: one stored ID per millisecond, so another one of the same
    # millisecond is not
    for i in rng.sample(range(1, rows + 1), absent):
        created, record_id = snowflake(i, rows)
        lines.append((record_id ^ 1, created, "deleted"))
    rng.shuffle(lines)

    partial = path.with_suffix(".partial")
    with open(partial, "w") as out:
        for record_id, created, reason in lines:
            stamp = datetime.fromtimestamp(created / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            out.write(
                f'{{"id":"{record_id}","action":"delete","created_at":"{stamp}.{created % 1000:03d}Z",'
                f'"reason":"{reason}"}}\n'
            )
    expected = {
        "lines": len(lines),
        "scrub_geo_lines": sum(reason == "scrub_geo" for _, _, reason in lines),
        "rows_after": rows - len(deleted),
        "geo_rows_after": rows // GEO_EVERY - geo_flagged,
        "duplicates": duplicates,
        "absent": absent,
    }
    partial.replace(path)
    expected_path.write_text(json.dumps(expected))
    return path, expected


def parquet_dataset(rows: int) -> Path:
    """``.bench/apply-v<N>-parquet-<rows>/date=YYYY-MM-DD/part-0.parquet`` (the rows of
    ``snowflake``, computed by pyarrow), generated once and reused."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = BENCH_DIR / f"apply-v{DATA_VERSION}-parquet-{rows}"
    if (path / "_complete").exists():
        return path
    print(
        f"generating a Parquet data set of {rows:,} tweets into {path.relative_to(ROOT)} "
        "(once; reused later) …",
        flush=True,
    )
    shutil.rmtree(path, ignore_errors=True)
    variants = pa.array(
        [LOREM[k % 50 : k % 50 + 40 + k % 90] for k in range(450)]
    )  # as sql_generate's substr
    for day in range(DAYS):
        first = -(-day * rows // DAYS) + 1  # the first i with (i - 1) * DAYS // rows == day
        stop = -(-(day + 1) * rows // DAYS) + 1
        if stop <= first:
            continue
        i = pa.array(range(first, stop), pa.int64())
        created = pc.add(T0, pc.divide(pc.multiply(pc.subtract(i, 1), SPAN), rows))
        ids = pc.bit_wise_or(
            pc.shift_left(pc.subtract(created, TWEPOCH), 22), pc.modulo(pc.multiply(i, 2654435761), 1 << 22)
        )
        no_geo = pc.not_equal(pc.modulo(i, GEO_EVERY), 0)

        def degrees(i, no_geo, factor: int, span: int):
            thousandths = pc.cast(pc.modulo(pc.multiply(i, factor), span * 1000), pa.float64())
            degrees = pc.subtract(pc.divide(thousandths, 1000.0), span / 2)
            return pc.if_else(no_geo, pa.scalar(None, pa.float64()), degrees)

        table = pa.table(
            {
                "id": ids,
                "author_id": pc.add(100000000, pc.modulo(pc.multiply(i, 48271), 1400000000)),
                "text": pc.binary_join_element_wise(
                    "Tweet ", pc.cast(i, pa.string()), ": ", variants.take(pc.modulo(i, 450)), ""
                ),
                "created_at": pc.cast(created, pa.timestamp("ms", tz="UTC")),
                "geo_lat": degrees(i, no_geo, 7919, 180),
                "geo_lon": degrees(i, no_geo, 104729, 360),
            }
        )
        date = datetime.fromtimestamp((T0 + day * DAY_MS) / 1000, UTC).strftime("%Y-%m-%d")
        folder = path / f"date={date}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / "part-0.parquet", compression="snappy")
    (path / "_complete").touch()
    return path


def parquet_counts(folder: Path) -> tuple[int, int]:
    """Rows, and rows with geo data, of every Parquet object under a folder."""
    import pyarrow.parquet as pq

    rows = geo_rows = 0
    for path in sorted(folder.rglob("*.parquet")):
        parquet = pq.ParquetFile(path)
        rows += parquet.metadata.num_rows
        column = parquet.read(columns=["geo_lat"]).column(0)
        geo_rows += len(column) - column.null_count
    return rows, geo_rows


# --- the children: one measurement each, timed in-process -------------------------------------


class Phases:
    """Wall seconds spent in some methods of a class or functions of a module (private names of
    the provider: whatever is missing is left out). A label starting with "of which" is a part
    of another phase, shown with its number of calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def wrap(self, owner, name: str, label_: str) -> None:
        original = getattr(owner, name, None)
        if original is None:
            return
        seconds, calls = self.seconds, self.calls

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds[label_] = seconds.get(label_, 0.0) + time.perf_counter() - started
                calls[label_] = calls.get(label_, 0) + 1

        setattr(owner, name, timed)


def child(spec: dict) -> dict:
    """Runs in a fresh process: one measurement, timed, with its memory and CPU."""
    kind = spec["kind"]
    if kind == "duckdb":
        import duckdb

        con = duckdb.connect()
        con.execute("SET memory_limit='1GB'")
        con.execute(f"SET temp_directory='{spec['spill']}'")
        con.execute("SELECT 1").fetchall()
        return timed(lambda: con.execute(duckdb_copy(spec)).fetchall(), {})

    from airflow_provider_xcompliance.apply.audit import AuditIdentity
    from airflow_provider_xcompliance.apply.rules import ChangeRules
    from airflow_provider_xcompliance.object_storage import read_blocks, to_path

    results = spec["results"]
    for _ in read_blocks(to_path(results), 16):  # lazy imports (fsspec) out of the timing
        break
    phases = Phases()
    if kind == "sql":
        if spec["driver"] == "psycopg2":
            import psycopg2 as driver
        else:
            import psycopg as driver
        conn = driver.connect(spec["dsn"])
        audit_table = spec.get("audit_table")
        target = SqlTarget(table="tweets", geo_columns=SQL_GEO, audit_table=audit_table)
        applier = SqlApplier(
            conn,
            "%s",
            ChangeRules("tweets"),
            target,
            audit=AuditIdentity("hmac", AUDIT_KEY) if audit_table else None,
            job_id="benchmark",
            run_id="benchmark",
        )
        cls = SqlApplier
        for name, what in (
            ("_load_results", "results into TEMP tables"),
            ("_plan", "counting (plan)"),
            ("_write_audit", "audit rows"),
            ("_apply", "audit + DELETE/UPDATE"),
        ):
            phases.wrap(cls, name, what)
        outcome = timed(lambda: applier.run(results), phases.seconds, phases.calls)
        conn.close()
        return outcome

    if kind == "parquet":
        for name, what in (("_read_results", "reading the results"), ("_rewrite", "rewriting (pass 2)")):
            phases.wrap(apply_files, name, what)
        # the is_in value sets of the flagged IDs (both passes)
        matcher = getattr(apply_parquet, "ParquetMatcher", None)
        phases.wrap(matcher, "_value_set", "of which building value sets")
        return timed(
            lambda: apply_to_files(
                results,
                ChangeRules("tweets"),
                spec["data"],
                format="parquet",
                geo_fields=PARQUET_GEO,
                partition_template="date={created_at:%Y-%m-%d}",
            ),
            phases.seconds,
            phases.calls,
        )
    raise ValueError(f"unknown measurement {kind!r}")


def duckdb_copy(spec: dict) -> str:
    geo = ", ".join(f"CASE WHEN r.deleted = false THEN NULL ELSE t.{c} END AS {c}" for c in PARQUET_GEO)
    return f"""
        COPY (
            WITH r AS (
                SELECT CAST(id AS BIGINT) AS id, bool_or(reason <> 'scrub_geo') AS deleted
                FROM read_json('{spec["results"]}', format = 'newline_delimited',
                               columns = {{id: 'VARCHAR', reason: 'VARCHAR'}})
                GROUP BY 1
            )
            SELECT t.id, t.author_id, t.text, t.created_at, {geo}, t.date
            FROM read_parquet('{spec["data"]}/*/*.parquet', hive_partitioning = true) t
            LEFT JOIN r ON t.id = r.id
            WHERE r.deleted IS DISTINCT FROM true
        ) TO '{spec["out"]}' (FORMAT PARQUET, PARTITION_BY (date))
    """


def timed(call, phases: dict, calls: dict | None = None) -> dict:
    base_rss = rss_mib()
    cpu_before, machine_before = cpu_self(), cpu_machine()
    started = time.perf_counter()
    call()
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "client_cpu": cpu_self() - cpu_before,
        "machine_cpu": cpu_machine() - machine_before,
        "peak_mib": peak_mib(),
        "growth_mib": max(0.0, peak_mib() - base_rss),
        "phases": phases,
        "calls": calls or {},
    }


def child_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    out = spec.pop("out_json")
    try:
        result = child(spec)
    except BaseException as exc:
        result = {"error": one_line(exc)}
    Path(out).write_text(json.dumps(result))


def run_child(spec: dict, work: Path, env: dict) -> dict:
    """One measurement in a fresh interpreter (imports and connecting are not timed)."""
    out = work / "child.json"
    out.unlink(missing_ok=True)
    with open(work / "children.log", "ab") as log:
        try:
            command = [sys.executable, __file__, "--child", json.dumps({**spec, "out_json": str(out)})]
            proc = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                cwd=ROOT,
                timeout=CHILD_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"no result after {CHILD_TIMEOUT} s"}
    if not out.exists():
        return {"error": f"the child died ({proc.returncode}; see children.log)"}
    return json.loads(out.read_text())


# --- PostgreSQL --------------------------------------------------------------------------------


class Server:
    """CPU of every PostgreSQL process (the postmaster, its live children, and the children it
    has reaped, such as the backend of a closed connection)."""

    def __init__(self, data_dir: Path):
        self.pid = int((data_dir / "postmaster.pid").read_text().split()[0])

    def cpu(self) -> float:
        total = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(entry) == self.pid:
                total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
            elif int(fields[1]) == self.pid:
                total += int(fields[11]) + int(fields[12])
        return total / CLOCK_TICKS


def psql_script(results: Path) -> str:
    geo = ", ".join(f"{c} = NULL" for c in SQL_GEO)
    return f"""\\set ON_ERROR_STOP on
BEGIN;
CREATE TEMP TABLE results (line text);
\\copy results (line) FROM '{results}' WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')
CREATE TEMP TABLE flagged AS SELECT (j->>'id')::bigint AS id, j->>'reason' AS reason
  FROM (SELECT line::jsonb AS j FROM results) AS lines;
DELETE FROM tweets WHERE id IN (SELECT id FROM flagged WHERE reason <> 'scrub_geo');
UPDATE tweets SET {geo} WHERE id IN (SELECT id FROM flagged WHERE reason = 'scrub_geo');
COMMIT;
"""


def run_measured_command(command: list[str]) -> dict:
    """A command under ``/usr/bin/time -v`` (its own peak RSS and CPU), timed from here; without
    /usr/bin/time, its figures come from RUSAGE_CHILDREN of a wrapper child."""
    with tempfile.NamedTemporaryFile(prefix="time-", suffix=".txt", dir=BENCH_DIR) as report:
        if os.access("/usr/bin/time", os.X_OK):
            wrapped = ["/usr/bin/time", "-v", "-o", report.name, *command]
        else:
            wrapper = (
                "import resource, subprocess, sys\n"
                "code = subprocess.call(sys.argv[2:])\n"
                "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
                "open(sys.argv[1], 'w').write(f'Maximum resident set size (kbytes): {u.ru_maxrss}\\n'"
                "f'User time (seconds): {u.ru_utime}\\nSystem time (seconds): {u.ru_stime}\\n')\n"
                "sys.exit(code)"
            )
            wrapped = [sys.executable, "-c", wrapper, report.name, *command]
        started, machine_before = time.perf_counter(), cpu_machine()
        proc = subprocess.run(wrapped, capture_output=True, text=True, check=False)
        seconds, machine = time.perf_counter() - started, cpu_machine() - machine_before
        text = Path(report.name).read_text()
    if proc.returncode != 0:
        return {"error": one_line(f"exit {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")}

    def figure(name: str) -> float:
        match = re.search(rf"{re.escape(name)}: ([0-9.]+)", text)
        return float(match[1]) if match else 0.0

    return {
        "seconds": seconds,
        "client_cpu": figure("User time (seconds)") + figure("System time (seconds)"),
        "machine_cpu": machine,
        "peak_mib": figure("Maximum resident set size (kbytes)") / 1024 or None,
        "growth_mib": None,
    }


def measure_sql(args, results: Path, expected: dict, work: Path, env: dict) -> None:
    sys.path.insert(0, str(ROOT))
    import psycopg

    from tests.support.postgres import running_postgres

    print(f"\nPostgreSQL: starting a server and generating {args.rows:,} rows …", flush=True)
    with running_postgres("xc_bench") as pg:
        dsn = f"host={pg.host} port={pg.port} user={pg.user} dbname={pg.database}"
        server = Server(pg.data_dir)
        with psycopg.connect(dsn, autocommit=True) as admin:
            for setting, value in (
                ("max_wal_size", "'4GB'"),
                ("checkpoint_timeout", "'1h'"),
                ("maintenance_work_mem", "'256MB'"),
            ):
                admin.execute(f"ALTER SYSTEM SET {setting} = {value}")
            admin.execute("SELECT pg_reload_conf()")
            version = admin.execute("SHOW server_version").fetchone()[0].split()[0]
            started = time.monotonic()
            admin.execute(sql_generate("tweets_template", args.rows))
            admin.execute("VACUUM ANALYZE tweets_template")
            size = admin.execute("SELECT pg_size_pretty(pg_table_size('tweets_template'))").fetchone()[0]
            print(f"  generated in {time.monotonic() - started:.0f} s ({size})", flush=True)

            def fresh_table() -> None:
                admin.execute("DROP TABLE IF EXISTS tweets")
                admin.execute("DROP TABLE IF EXISTS xc_audit")
                admin.execute("CREATE TABLE tweets AS SELECT * FROM tweets_template")
                admin.execute("ALTER TABLE tweets ADD PRIMARY KEY (id)")
                admin.execute("VACUUM ANALYZE tweets")
                admin.execute("CHECKPOINT")

            def counts() -> tuple[int, int]:
                row = admin.execute("SELECT COUNT(*), COUNT(geo_lat) FROM tweets").fetchone()
                return int(row[0]), int(row[1])

            script = work / "baseline.sql"
            script.write_text(psql_script(results))
            psql = [
                "psql",
                "-X",
                "-q",
                "-h",
                pg.host,
                "-p",
                str(pg.port),
                "-U",
                pg.user,
                "-d",
                pg.database,
                "-f",
                str(script),
            ]
            variants = [
                ("psql \\copy + DELETE + UPDATE", lambda: run_measured_command(psql)),
                (
                    "SqlApplier (HMAC audit)",
                    lambda: run_child(
                        {
                            "kind": "sql",
                            "driver": "psycopg",
                            "dsn": dsn,
                            "results": str(results),
                            "audit_table": "xc_audit",
                        },
                        work,
                        env,
                    ),
                ),
                (
                    "SqlApplier, no audit",
                    lambda: run_child(
                        {"kind": "sql", "driver": "psycopg", "dsn": dsn, "results": str(results)}, work, env
                    ),
                ),
                (
                    "SqlApplier, psycopg2 (HMAC audit)",
                    lambda: run_child(
                        {
                            "kind": "sql",
                            "driver": "psycopg2",
                            "dsn": dsn,
                            "results": str(results),
                            "audit_table": "xc_audit",
                        },
                        work,
                        env,
                    ),
                ),
            ]
            if args.no_psycopg2:
                variants.pop()
            measured: dict[str, list[dict]] = {name: [] for name, _ in variants}
            for run in range(args.runs):
                for name, measure in variants:
                    print(f"  run {run + 1} of {args.runs}: {name} …", end="", flush=True)
                    fresh_table()
                    cpu_before = server.cpu()
                    result = measure()
                    time.sleep(0.5)  # the backend of the closed connection exits and is reaped
                    result["server_cpu"] = server.cpu() - cpu_before
                    if "error" not in result:
                        result["rows_after"], result["geo_rows_after"] = counts()
                        if name.startswith("SqlApplier (HMAC"):
                            audit_rows = admin.execute("SELECT COUNT(*) FROM xc_audit").fetchone()[0]
                            result["audit_rows"] = audit_rows
                    measured[name].append(result)
                    print(f" {result['seconds']:.1f} s" if "error" not in result else " failed", flush=True)
            admin.execute("DROP TABLE IF EXISTS tweets")
            admin.execute("DROP TABLE IF EXISTS tweets_template")

    import psycopg2

    print()
    print(
        f"PostgreSQL {version}: {args.rows:,} rows ({size}), {expected['lines']:,} result lines "
        f"({expected['scrub_geo_lines']:,} scrub_geo, {expected['duplicates']} duplicated IDs, "
        f"{expected['absent']} IDs not stored); psycopg {psycopg.__version__}, "
        f"psycopg2 {psycopg2.__version__.split()[0]}; {how(args.runs)}"
    )
    print(f"expected after: {expected['rows_after']:,} rows, {expected['geo_rows_after']:,} with geo")
    print_table(measured, "psql", server=True)
    audit = [run["audit_rows"] for run in measured["SqlApplier (HMAC audit)"] if "audit_rows" in run]
    if audit:
        print(f"  audit rows written by SqlApplier (HMAC audit): {audit[0]:,}")
    print_phases(measured, "checks, commit and the rest")


# --- Parquet -----------------------------------------------------------------------------------


def measure_parquet(args, results: Path, expected: dict, work: Path, env: dict) -> None:
    import duckdb
    import pyarrow

    data = parquet_dataset(args.rows)
    objects = list(data.rglob("*.parquet"))
    data_bytes = sum(p.stat().st_size for p in objects)
    variants = ("DuckDB COPY … TO (FORMAT PARQUET)", "apply_to_files")
    measured: dict[str, list[dict]] = {name: [] for name in variants}
    for run in range(args.runs):
        for name in variants:
            print(f"  run {run + 1} of {args.runs}: {name} …", end="", flush=True)
            target = work / "parquet-out"
            shutil.rmtree(target, ignore_errors=True)
            if name == "apply_to_files":
                shutil.copytree(data, target, ignore=shutil.ignore_patterns("_complete"))
                spec = {"kind": "parquet", "results": str(results), "data": str(target)}
                result = run_child(spec, work, env)
            else:
                spill = work / "duckdb-spill"
                result = run_child(
                    {
                        "kind": "duckdb",
                        "results": str(results),
                        "data": str(data),
                        "out": str(target),
                        "spill": str(spill),
                    },
                    work,
                    env,
                )
                shutil.rmtree(spill, ignore_errors=True)
            if "error" not in result:
                result["rows_after"], result["geo_rows_after"] = parquet_counts(target)
            shutil.rmtree(target, ignore_errors=True)
            measured[name].append(result)
            print(f" {result['seconds']:.1f} s" if "error" not in result else " failed", flush=True)

    print()
    print(
        f"Parquet: {args.rows:,} tweets in {len(objects)} objects ({data_bytes / 1e6:.0f} MB, snappy), "
        f"{expected['lines']:,} result lines; pyarrow {pyarrow.__version__}, duckdb {duckdb.__version__}; "
        f"{how(args.runs)}"
    )
    print(f"expected after: {expected['rows_after']:,} rows, {expected['geo_rows_after']:,} with geo")
    print_table(measured, "DuckDB", server=False)
    print_phases(measured, "listing, scanning (pass 1) and the rest")


# --- the tables --------------------------------------------------------------------------------


def how(runs: int) -> str:
    return f"best of {runs}" if runs > 1 else "1 run"


NAME_WIDTH = 44


def print_table(measured: dict[str, list[dict]], baseline_name: str, server: bool) -> None:
    """One row per measurement, the first one the baseline."""
    names = list(measured)
    baseline, _ = best(measured[names[0]])
    print(
        f"{'run':<{NAME_WIDTH}} {'seconds':>8} {'vs ' + baseline_name:>10} {'peak RSS MiB':>12} "
        f"{'RSS growth MiB':>14} {'client CPU':>10}"
        + (f" {'server CPU':>10}" if server else "")
        + f" {'others CPU':>10} {'rows after':>12} {'geo rows after':>14}"
    )
    for number, name in enumerate(names):
        figures, note = best(measured[name])
        shown = f"{name} (baseline)" if number == 0 else name
        if figures is None:
            print(f"{shown:<{NAME_WIDTH}} failed: {note}")
            continue
        seconds = figures["seconds"]
        ratio = f"{seconds / baseline['seconds']:.2f}x" if baseline else "-"
        peak = "-" if figures.get("peak_mib") is None else f"{figures['peak_mib']:.1f}"
        growth = "-" if figures.get("growth_mib") is None else f"{figures['growth_mib']:.1f}"
        server_cpu = "-"
        if figures.get("server_cpu") is not None:
            server_cpu = f"{100 * figures['server_cpu'] / seconds:.0f}%"
        others = "-"
        if figures.get("machine_cpu") is not None:
            spent = figures["machine_cpu"] - figures["client_cpu"] - (figures.get("server_cpu") or 0.0)
            others = f"{max(0.0, 100 * spent / seconds):.0f}%"
        print(
            f"{shown:<{NAME_WIDTH}} {seconds:>8.1f} {ratio:>10} {peak:>12} {growth:>14} "
            f"{100 * figures['client_cpu'] / seconds:>9.0f}%"
            + (f" {server_cpu:>10}" if server else "")
            + f" {others:>10} {figures.get('rows_after', 0):>12,} "
            f"{figures.get('geo_rows_after', 0):>14,}{note}"
        )


def print_phases(measured: dict[str, list[dict]], rest: str) -> None:
    """Where each provider row's time went (its fastest run)."""
    for name, runs in measured.items():
        figures, _ = best(runs)
        phases = dict((figures or {}).get("phases") or {})
        if not phases:
            continue
        both = phases.pop("audit + DELETE/UPDATE", None)
        if both is not None:
            phases["DELETE/UPDATE"] = both - phases.get("audit rows", 0.0)
        calls = figures.get("calls") or {}
        nested = {what: phases.pop(what) for what in list(phases) if what.startswith("of which")}
        left = figures["seconds"] - sum(phases.values())
        parts = [f"{what} {seconds:.1f} s" for what, seconds in phases.items()] + [f"{rest} {left:.1f} s"]
        parts += [
            f"{what} {seconds:.1f} s ({calls.get(what, '?')} calls)" for what, seconds in nested.items()
        ]
        print(f"  {name}: {', '.join(parts)}")


# --- the benchmark -----------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child_main(sys.argv[2])
        return
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1M rows and 60k result lines")
    parser.add_argument(
        "--rows",
        type=parse_size,
        default=None,
        metavar="N",
        help="stored tweets (1M, 500k, 2000000…); default 10M, 1M with --quick",
    )
    parser.add_argument(
        "--results",
        type=parse_size,
        default=None,
        metavar="N",
        help="result lines; default 600k, 60k with --quick",
    )
    parser.add_argument(
        "--runs", type=int, default=1, help="runs per measurement, the best is shown (default 1)"
    )
    parser.add_argument("--only", choices=("sql", "parquet"), help="one part only")
    parser.add_argument("--no-psycopg2", action="store_true", help="skip the psycopg2 row of the SQL part")
    args, _ = parser.parse_known_args()  # ./dev bench passes every benchmark the same options
    args.rows = args.rows or (1_000_000 if args.quick else 10_000_000)
    args.results = args.results or (60_000 if args.quick else 600_000)
    args.runs = max(1, args.runs)
    if args.only != "parquet" and not shutil.which("psql"):
        sys.exit("psql is needed for the SQL baseline (Debian: apt-get install postgresql-client)")

    BENCH_DIR.mkdir(exist_ok=True)
    started = time.monotonic()
    results, expected = results_file(args.rows, args.results)
    env = {
        **os.environ,
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW_HOME": os.environ.get("AIRFLOW_HOME", str(BENCH_DIR / "airflow")),
    }
    print(
        f"{label(args.rows)} tweets, {label(args.results)} result lines ({results.relative_to(ROOT)}); "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="apply-", dir=BENCH_DIR) as tmp:
        work = Path(tmp)
        if args.only != "parquet":
            measure_sql(args, results, expected, work, env)
        if args.only != "sql":
            print(flush=True)
            measure_parquet(args, results, expected, work, env)
    print(f"\ndone in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
