"""How far the export of an archive's IDs (step 2) is from ``psql \\copy``, as figures.

    ./dev bench export               # 10M stored tweets (about 2 minutes, plus generating them)
    ./dev bench export --quick       # 1M tweets
    .venv/bin/python benchmarks/export.py --rows 2M --runs 5

Nothing is asserted: these machines are noisy, so it prints figures and the conditions.

The table is ``benchmarks/apply.py``'s (``tweets(id BIGINT PRIMARY KEY, author_id, text, geo…)``,
realistic 19-digit snowflake IDs), generated once per run in a throw-away PostgreSQL server. In
each round, in alternating order:

  psql (baseline)          ``psql -c "\\copy (SELECT id FROM tweets) TO 'file'"``: the server's COPY,
                           written by psql, checked by nobody
  export_sql_ids           the provider: ``export_sql_ids(conn, SqlArchive(conn_id=…,
                           table="tweets"), "tweets", path)`` over psycopg 3 and over psycopg2
                           (PostgresHook hands out either): the same COPY, each line checked by
                           the upload's ID rules, written atomically

Both are measured as the work they do, with the same server: "server CPU" is what PostgreSQL's
processes spent meanwhile, so a reader can see whether the server (the same for both) was the
limit. Each figure is the median of ``--runs`` rounds (default 3); "vs psql" is the median of the
rounds' ratios. Options of other benchmarks are ignored.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from multiprocessing import get_context

from _measure import cpu_self, parse_size, peak_mib, rss_mib
from apply import BENCH_DIR, ROOT, Server, cpu_machine, label, sql_generate

from airflow_provider_xcompliance.archives import SqlArchive
from airflow_provider_xcompliance.export.sql import export_sql_ids


def provider_round(dsn: str, target: str, driver: str, pipe) -> None:
    """In a forked child: one export, with its own time, CPU and RSS growth."""
    module = __import__(driver)
    conn = module.connect(dsn)
    base, cpu, started = rss_mib(), cpu_self(), time.perf_counter()
    report = export_sql_ids(conn, SqlArchive(conn_id="bench", table="tweets"), "tweets", target)
    seconds = time.perf_counter() - started
    pipe.send(
        {"seconds": seconds, "cpu": cpu_self() - cpu, "growth": peak_mib() - base, "ids": report["ids"]}
    )
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1M rows")
    parser.add_argument("--rows", type=parse_size, default=None, help="stored tweets; default 10M")
    parser.add_argument("--runs", type=int, default=3, help="rounds (the median is shown)")
    args, _ = parser.parse_known_args()
    rows = args.rows or (1_000_000 if args.quick else 10_000_000)
    sys.path.insert(0, str(ROOT))
    import psycopg

    from tests.support.postgres import running_postgres

    BENCH_DIR.mkdir(exist_ok=True)
    work = BENCH_DIR / f"export-{os.getpid()}"
    work.mkdir()
    # What a worker has imported already (ObjectStoragePath imports much of Airflow on first use),
    # imported before the children fork: their time is the export's own.
    from airflow_provider_xcompliance.object_storage import to_path

    to_path(work / "warm-up").exists()
    print(f"\nPostgreSQL: starting a server and generating {rows:,} rows …", flush=True)
    with running_postgres("xc_bench") as pg:
        dsn = f"host={pg.host} port={pg.port} user={pg.user} dbname={pg.database}"
        server = Server(pg.data_dir)
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(sql_generate("tweets", rows))
            admin.execute("ALTER TABLE tweets ADD PRIMARY KEY (id)")
            admin.execute("VACUUM ANALYZE tweets")
            version = admin.execute("SHOW server_version").fetchone()[0].split()[0]
        psql = ["psql", "-X", "-q", "-h", pg.host, "-p", str(pg.port), "-U", pg.user, "-d", pg.database]
        measured: dict[str, list[dict]] = {"psql": [], "psycopg": [], "psycopg2": []}
        for round_ in range(args.runs):
            order = ("psql", "psycopg", "psycopg2") if round_ % 2 == 0 else ("psycopg2", "psycopg", "psql")
            for name in order:
                target = work / f"{name}.txt"
                server_cpu, machine, started = server.cpu(), cpu_machine(), time.perf_counter()
                if name == "psql":
                    command = [*psql, "-c", f"\\copy (SELECT id FROM tweets) TO '{target}'"]
                    subprocess.run(command, check=True)
                    figures = {"seconds": time.perf_counter() - started, "cpu": None, "growth": None}
                else:
                    ctx = get_context("fork")
                    receive, send = ctx.Pipe(duplex=False)
                    child = ctx.Process(target=provider_round, args=(dsn, str(target), name, send))
                    child.start()
                    figures = receive.recv()
                    child.join()
                wall = time.perf_counter() - started
                figures["server"] = (server.cpu() - server_cpu) / wall
                figures["machine"] = (cpu_machine() - machine) / wall
                figures["bytes"] = target.stat().st_size
                measured[name].append(figures)
                target.unlink()
    work.rmdir()

    def median(name: str, key: str) -> float | None:
        values = [run[key] for run in measured[name] if run.get(key) is not None]
        return statistics.median(values) if values else None

    def ratios(name: str) -> list[float]:
        """The row's speed beside psql's in each round (1.00x = as fast)."""
        return [b["seconds"] / p["seconds"] for p, b in zip(measured[name], measured["psql"], strict=True)]

    size = measured["psql"][0]["bytes"]
    print(
        f"\nExport of {label(rows)} tweet IDs ({size / 1e6:.0f} MB), PostgreSQL {version}, "
        f"median of {args.runs}"
    )
    header = ("run", "seconds", "MB/s", "vs psql", "server CPU", "client CPU", "RSS growth MiB")
    print(f"{header[0]:<28}" + "".join(f"{h:>{len(h) + 2}}" for h in header[1:]))
    rows_ = (
        ("psql", "psql \\copy (baseline)"),
        ("psycopg", "export_sql_ids, psycopg 3"),
        ("psycopg2", "… psycopg2"),
    )
    for name, title in rows_:
        seconds = median(name, "seconds") or 0.0
        cpu, growth = median(name, "cpu"), median(name, "growth")
        ratio = "1.00x" if name == "psql" else f"{statistics.median(ratios(name)):.2f}x"
        print(
            f"{title:<28}{seconds:>9.2f}{size / seconds / 1e6:>6.0f}{ratio:>9}"
            f"{(median(name, 'server') or 0) * 100:>11.0f}%"
            f"{'-' if cpu is None else f'{cpu / seconds * 100:.0f}%':>12}"
            f"{'-' if growth is None else f'{growth:.1f}':>16}"
        )
    print(
        "  vs psql: the speed of the row beside psql's (1.00x = as fast; the issue's goal is at least 0.9x)"
    )
    for name in ("psycopg", "psycopg2"):
        print(f"  {name} by round: {', '.join(f'{r:.2f}x' for r in ratios(name))}")


if __name__ == "__main__":
    main()
