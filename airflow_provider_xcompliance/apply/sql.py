"""Applying results to SQL tables through any DB-API connection, in one transaction.

The result IDs are streamed into a TEMP table (COPY on PostgreSQL, batched inserts elsewhere)
and reduced to one change per ID; then the audit rows are written and the portable statements
``DELETE … WHERE col IN (SELECT …)`` and ``UPDATE … SET geo = NULL`` run. Everything happens on
one connection and is committed once; any failure rolls all of it back.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

from airflow_provider_xcompliance.apply.audit import AUDIT_COLUMNS, AuditIdentity
from airflow_provider_xcompliance.apply.flagged import FlaggedRecord, read_flagged
from airflow_provider_xcompliance.apply.report import add_counts, new_report, utc_now_text
from airflow_provider_xcompliance.apply.rules import (
    DELETE,
    KEEP,
    SCRUB_GEO,
    ChangeRules,
    check_delete_fraction,
)
from airflow_provider_xcompliance.apply.sql_tables import FLAGGED_TABLE, SqlChange, SqlTarget, check_tables
from airflow_provider_xcompliance.exceptions import ApplyConfigError, ApplyFailed, XComplianceError
from airflow_provider_xcompliance.object_storage import Location
from airflow_provider_xcompliance.reports import ApplyReport
from airflow_provider_xcompliance.utils.logs import Log

RESULTS_TABLE = "xc_results"  # TEMP tables: private to the connection, dropped before commit
CHAINS_TABLE = "xc_chains"  # while the flagged IDs are extended to their edit chains
CHAINED_TABLE = "xc_chained"
AUDIT_TABLE_DDL = (
    "record_key VARCHAR(64), record_type VARCHAR(8), target VARCHAR(256), reason VARCHAR(64), "
    "change VARCHAR(16), job_id VARCHAR(64), run_id VARCHAR(256), applied_at VARCHAR(32)"
)


class SqlApplier:
    """Applies one results file to one :class:`SqlTarget` over an open DB-API connection.

    The connection is the caller's; this commits or rolls back, and leaves it open.
    """

    def __init__(
        self,
        conn: Any,
        placeholder: str,
        rules: ChangeRules,
        target: SqlTarget,
        *,
        audit: AuditIdentity | None = None,
        job_id: str | None = None,
        run_id: str | None = None,
        max_delete_fraction: float | None = None,
        dry_run: bool = False,
        batch_size: int = 10_000,
        log: Log | None = None,
    ) -> None:
        if target.audit_table and audit is None:
            raise ApplyConfigError("an audit_table needs an AuditIdentity")
        if rules.job_type == "tweets" and target.author_id_column:
            raise ApplyConfigError(
                "author_id_column is for users jobs (a tweets job matches tweets by their id_column)"
            )
        self.conn = conn
        self.placeholder = placeholder
        self.rules = rules
        self.target = target
        self.audit = audit
        self.job_id = job_id
        self.run_id = run_id
        self.max_delete_fraction = max_delete_fraction
        self.dry_run = dry_run
        self.batch_size = batch_size
        self.log: Log = log or logging.getLogger(__name__)
        self.driver = type(conn).__module__.split(".")[0]  # sqlite3, psycopg, psycopg2, ...
        self.postgres = self.driver in ("psycopg", "psycopg2")
        self._touched_tables: list[str] = []

    def run(self, results_path: Location) -> ApplyReport:
        started = time.monotonic()
        report = new_report(self.rules, self.job_id, results_path, self.target.table, self.dry_run)
        sqlite_mode = getattr(self.conn, "isolation_level", None) if self.driver == "sqlite3" else None
        self._begin()
        try:
            with _closing(self.conn.cursor()) as cur:
                self._check_tables(cur)
                self._load_results(cur, results_path, report)
                planned = self._plan(cur, report)
                if self.dry_run:
                    self.log.info("Dry run: nothing changed")
                    self.conn.rollback()
                else:
                    self._apply(cur, planned)
                    for table in (*self._touched_tables, FLAGGED_TABLE, RESULTS_TABLE):
                        cur.execute(f"DROP TABLE {table}")
                    self.conn.commit()
        except XComplianceError:
            self.conn.rollback()
            raise
        except Exception as exc:
            self.conn.rollback()
            raise ApplyFailed(
                f"Applying {results_path} to {self.target.table} failed; nothing was changed: {exc}"
            ) from exc
        finally:
            if self.driver == "sqlite3":
                self.conn.isolation_level = sqlite_mode
        report["seconds"] = round(time.monotonic() - started, 3)
        if not report["changed"]:
            self.log.info(
                "Nothing to change: no stored record is flagged (or these results were applied already)"
            )
        return report

    def _begin(self) -> None:
        """One explicit transaction. Python's sqlite3 would commit DDL (the TEMP tables, the
        audit table) on its own, so it is put in manual mode and told to BEGIN."""
        if self.driver == "sqlite3":
            self.conn.isolation_level = None
            self.conn.execute("BEGIN")
            return
        if getattr(self.conn, "autocommit", False):
            self.conn.autocommit = False
        if self.postgres:  # for this transaction only: hash the result IDs in memory, not on disk
            with _closing(self.conn.cursor()) as cur:
                cur.execute("SET LOCAL work_mem = '128MB'")

    def _check_tables(self, cur: Any) -> None:
        check_tables(cur, self.target.required_columns(self.rules.job_type))

    def _load_results(self, cur: Any, results_path: Location, report: ApplyReport) -> None:
        """Stream the results into a TEMP table typed like the matched column, then reduce them
        to one change per ID (delete wins over scrub_geo; overrides that keep are left out)."""
        first = self.target.changes(self.rules.job_type)[0]
        cur.execute(
            f"CREATE TEMP TABLE {RESULTS_TABLE} AS SELECT {first.column} AS id, "
            f"CAST(NULL AS VARCHAR(64)) AS reason, CAST(NULL AS VARCHAR(16)) AS change "
            f"FROM {first.table} WHERE 1 = 0"
        )
        kept: Counter[str] = Counter()

        def to_change() -> Iterator[FlaggedRecord]:
            for record in read_flagged(results_path, self.rules):
                report["result_lines"] += 1
                if record.change == KEEP:
                    kept[record.reason] += 1
                else:
                    yield record

        self._write_rows(
            cur, RESULTS_TABLE, ("id", "reason", "change"), ((r.id, r.reason, r.change) for r in to_change())
        )
        report["kept"] = dict(sorted(kept.items()))
        cur.execute(
            f"CREATE TEMP TABLE {FLAGGED_TABLE} AS "
            f"SELECT id, change, SUBSTR(pick, LENGTH(change) + 2) AS reason "
            f"FROM (SELECT id, MIN(change) AS change, MIN(change || ' ' || reason) AS pick "
            f"FROM {RESULTS_TABLE} GROUP BY id) g"
        )
        if self.target.edit_chains(self.rules.job_type):
            self._reach_edit_chains(cur)
        cur.execute(f"CREATE INDEX {FLAGGED_TABLE}_id ON {FLAGGED_TABLE} (id)")
        if self.postgres:
            cur.execute(f"ANALYZE {FLAGGED_TABLE}")  # autovacuum never analyzes TEMP tables

    def _reach_edit_chains(self, cur: Any) -> None:
        """Deleting any version of an edited tweet deletes every stored version of its chain, and
        scrubbing one scrubs them all: each chain (by its first tweet's ID, which a flagged ID
        may be itself) takes its strongest change, and every stored version that change."""
        table, tweet_id, root = self.target.table, self.target.id_column, self.target.edit_root_column
        cur.execute(
            f"CREATE TEMP TABLE {CHAINS_TABLE} AS "
            f"SELECT root, MIN(change) AS change, MIN(change || ' ' || reason) AS pick FROM ("
            f"SELECT t.{root} AS root, f.change, f.reason FROM {table} t JOIN {FLAGGED_TABLE} f "
            f"ON t.{tweet_id} = f.id WHERE t.{root} IS NOT NULL "
            f"UNION ALL SELECT id AS root, change, reason FROM {FLAGGED_TABLE}) c GROUP BY root"
        )
        cur.execute(
            f"CREATE TEMP TABLE {CHAINED_TABLE} AS "
            f"SELECT id, MIN(change) AS change, "
            f"SUBSTR(MIN(change || ' ' || reason), LENGTH(MIN(change)) + 2) AS reason "
            f"FROM (SELECT id, change, reason FROM {FLAGGED_TABLE} UNION ALL "
            f"SELECT t.{tweet_id} AS id, c.change, SUBSTR(c.pick, LENGTH(c.change) + 2) AS reason "
            f"FROM {table} t JOIN {CHAINS_TABLE} c ON t.{root} = c.root) v GROUP BY id"
        )
        cur.execute(f"DELETE FROM {FLAGGED_TABLE}")
        cur.execute(
            f"INSERT INTO {FLAGGED_TABLE} (id, change, reason) SELECT id, change, reason FROM {CHAINED_TABLE}"
        )
        for temp in (CHAINED_TABLE, CHAINS_TABLE):
            cur.execute(f"DROP TABLE {temp}")

    def _write_rows(
        self, cur: Any, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> None:
        """Rows into a table: COPY on PostgreSQL (ten times faster than INSERTs there), batched
        INSERTs elsewhere. An error raised while the rows are produced comes out as itself."""
        if not self.postgres:
            values = ", ".join([self.placeholder] * len(columns))
            insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values})"
            for batch in _batches(rows, self.batch_size):
                cur.executemany(insert, batch)
            return
        copy_sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        lines = map(_copy_line, rows)
        if self.driver == "psycopg":
            with cur.copy(copy_sql) as copy:
                for block in _batches(lines, self.batch_size):
                    copy.write("".join(block))
            return
        stream = _CopyStream(lines)
        try:
            cur.copy_expert(copy_sql, stream)
        except Exception:
            if stream.error is not None:  # psycopg2 turns an error in read() into a QueryCanceled
                raise stream.error from None
            raise

    def _plan(self, cur: Any, report: ApplyReport) -> list[tuple[SqlChange, str]]:
        """Count what each change will touch, by reason; refuse before any change if a table
        would lose more than ``max_delete_fraction`` of its rows, or if geo data is to be
        removed from a table whose geo columns were not named."""
        if self.rules.job_type == "tweets" and not self.target.geo_columns:
            cur.execute(f"SELECT COUNT(*) FROM {FLAGGED_TABLE} WHERE change = '{SCRUB_GEO}'")
            if int(cur.fetchone()[0]):
                raise ApplyConfigError(
                    "The results ask to remove geo data (scrub_geo) but geo_columns is empty: name the "
                    f"geo columns of {self.target.table}, or keep those tweets as they are with "
                    "overrides={'scrub_geo': 'keep'}; nothing was changed"
                )
        planned = []
        deleting: Counter[str] = Counter()
        for number, change in enumerate(self.target.changes(self.rules.job_type)):
            # The touched rows, read from the (large) table once: counted here, audited later.
            touched = f"xc_touched_{number}"
            cur.execute(
                f"CREATE TEMP TABLE {touched} AS "
                + change.matched(f"t.{change.id_column} AS record_id, f.reason")
            )
            self._touched_tables.append(touched)
            cur.execute(f"SELECT reason, COUNT(*) FROM {touched} GROUP BY reason")
            by_reason = {str(reason): int(count) for reason, count in cur.fetchall()}
            if change.change == DELETE:
                deleting[change.table] += sum(by_reason.values())
            add_counts(report, change.table, change.change, by_reason)
            if by_reason:
                planned.append((change, touched))
                self.log.info(
                    "%s %s: %s",
                    "Would change" if self.dry_run else "Changing",
                    change.table,
                    ", ".join(f"{n} {change.change} ({reason})" for reason, n in sorted(by_reason.items())),
                )
        for table, count in deleting.items() if self.max_delete_fraction is not None else ():
            cur.execute(f"SELECT COUNT(*) FROM {table}")
            check_delete_fraction(self.max_delete_fraction, table, count, int(cur.fetchone()[0]))
        return planned

    def _apply(self, cur: Any, planned: Sequence[tuple[SqlChange, str]]) -> None:
        if self.target.audit_table and planned:
            self._write_audit(cur, planned)
        for change, _ in planned:
            cur.execute(change.statement())
            self.log.info("%s: %s rows (%s)", change.table, cur.rowcount, change.change)

    def _write_audit(self, cur: Any, planned: Sequence[tuple[SqlChange, str]]) -> None:
        """One audit row per record changed, naming it by a keyed hash (or as asked), written
        before the changes in the same transaction, so the trail and the data agree."""
        audit_table = self.target.audit_table
        assert self.audit is not None and audit_table
        cur.execute(f"CREATE TABLE IF NOT EXISTS {audit_table} ({AUDIT_TABLE_DDL})")
        applied_at = utc_now_text()
        record_key = self.audit.record_key
        for change, touched in planned:
            with _closing(self._streaming_cursor()) as rows:
                rows.execute(f"SELECT record_id, reason FROM {touched}")
                # A batch is fetched, then copied: a connection cannot FETCH in the middle of a COPY.
                while batch := rows.fetchmany(self.batch_size):
                    self._write_rows(
                        cur,
                        audit_table,
                        AUDIT_COLUMNS,
                        [
                            (
                                record_key(str(record_id)),
                                change.record_type,
                                change.table,
                                reason,
                                change.change,
                                self.job_id,
                                self.run_id,
                                applied_at,
                            )
                            for record_id, reason in batch
                        ],
                    )

    def _streaming_cursor(self) -> Any:
        """A server-side cursor on PostgreSQL, so that the rows come in batches, not all at once."""
        if self.postgres:
            return self.conn.cursor(name="xc_audit_rows")
        return self.conn.cursor()


class _closing:
    """``contextlib.closing`` for cursors, which not every driver makes context managers."""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor

    def __enter__(self) -> Any:
        return self.cursor

    def __exit__(self, *exc: object) -> None:
        self.cursor.close()


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_line(row: Sequence[Any]) -> str:
    """One row in COPY's text format: tab-separated, ``\\N`` for NULL, specials escaped (a
    printable value without a backslash needs no escaping: the common case, checked first)."""
    return "\t".join(_copy_value(value) for value in row) + "\n"


def _copy_value(value: Any) -> str:
    if value is None:
        return "\\N"
    text = str(value)
    return text if text.isprintable() and "\\" not in text else text.translate(_COPY_ESCAPES)


class _CopyStream:
    """A file-like ``read(size)`` over COPY lines, for psycopg2's ``copy_expert``."""

    def __init__(self, lines: Iterator[str]) -> None:
        self.lines = lines
        self.buffer = b""
        self.error: BaseException | None = None  # what reading the lines raised, e.g. InvalidResultsError

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.buffer) < size:
            try:
                block = "".join(islice(self.lines, 4096))
            except BaseException as exc:
                self.error = exc
                raise
            if not block:
                break
            self.buffer += block.encode()
        if size < 0:
            size = len(self.buffer)
        out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out

    readline = read


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch
