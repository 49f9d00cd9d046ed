"""The IDs of a :class:`~airflow_provider_xcompliance.archives.SqlArchive`, exported by the
database itself: PostgreSQL through ``COPY … TO STDOUT``, other databases through a cursor read in
batches. Distinct where IDs repeat (a users job's authors, a chain's IDs beside the tweets'), by
the engine (``DISTINCT`` / ``UNION``), which spills to disk rather than fill memory."""

from __future__ import annotations

import io
import time
from typing import Any

from airflow_provider_xcompliance.apply.sql_tables import check_tables
from airflow_provider_xcompliance.archives import SqlArchive
from airflow_provider_xcompliance.export.writing import IdFileWriter
from airflow_provider_xcompliance.object_storage import Location
from airflow_provider_xcompliance.reports import ExportReport


def export_query(archive: SqlArchive, job_type: str) -> str:
    """One statement over every column a job type checks (:meth:`SqlArchive.id_columns`); NULLs
    are no IDs and are left out."""
    columns = archive.id_columns(job_type)
    if len(columns) > 1:  # as text: the columns may differ in type (a BIGINT, a TEXT of digits)
        return " UNION ".join(
            f"SELECT CAST({c} AS VARCHAR(32)) AS id FROM {t} WHERE {c} IS NOT NULL" for t, c in columns
        )
    ((table, column),) = columns
    distinct = "DISTINCT " if job_type == "users" else ""  # authors repeat; stored tweets are a row each
    return f"SELECT {distinct}{column} AS id FROM {table} WHERE {column} IS NOT NULL"


def export_sql_ids(
    conn: Any, archive: SqlArchive, job_type: str, ids_path: Location, *, batch_size: int = 50_000
) -> ExportReport:
    """Write the archive's IDs for ``job_type`` to ``ids_path`` over an open DB-API connection
    (the caller's: it is only read from, and left open)."""
    started = time.monotonic()
    columns = archive.id_columns(job_type)
    required: dict[str, set[str]] = {}
    for table, column in columns:
        required.setdefault(table, set()).add(column)
    source = f"The IDs of {archive.name} ({', '.join(f'{t}.{c}' for t, c in columns)}), row"
    cur = conn.cursor()
    try:
        check_tables(cur, required)
        query = export_query(archive, job_type)
        copy = {"psycopg": _copy_psycopg, "psycopg2": _copy_psycopg2}.get(_driver(conn))
        with IdFileWriter(ids_path, source) as writer:
            if copy is not None:
                copy(cur, query, writer)
            else:
                _fetch(cur, query, writer, batch_size)
        written = writer.written()
    finally:
        cur.close()
        conn.rollback()  # nothing was changed; end the read transaction
    return ExportReport(
        job_type=job_type,
        archive=archive.name,
        path=str(written.path),
        ids=written.ids,
        bytes=written.bytes,
        seconds=round(time.monotonic() - started, 3),
    )


def _driver(conn: Any) -> str:
    return type(conn).__module__.split(".")[0]  # sqlite3, psycopg, psycopg2, ...


def _copy_psycopg(cur: Any, query: str, writer: IdFileWriter) -> None:
    """psycopg 3 hands over the copied rows in blocks. A refused ID ends the COPY early, and
    leaving the ``copy`` block cancels the rest (the connection stays usable)."""
    with cur.copy(f"COPY ({query}) TO STDOUT") as copy:
        for data in copy:
            writer.write(bytes(data))  # a view into psycopg's buffer: copied, not held


def _copy_psycopg2(cur: Any, query: str, writer: IdFileWriter) -> None:
    """psycopg2 copies into a file, one ``write`` a row: a C-level text buffer takes the rows, so
    that the writer sees a block per MiB."""
    sink = io.TextIOWrapper(io.BufferedWriter(_RawSink(writer), 1024 * 1024), encoding="utf-8", newline="")
    cur.copy_expert(f"COPY ({query}) TO STDOUT", sink, size=1024 * 1024)
    sink.flush()


class _RawSink(io.RawIOBase):
    def __init__(self, writer: IdFileWriter) -> None:
        self.writer = writer

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.writer.write(bytes(data))
        return len(data)


def _fetch(cur: Any, query: str, writer: IdFileWriter, batch_size: int) -> None:
    """Rows read ``batch_size`` at a time, each value as its text (an int or a string of digits;
    anything else is refused by the ID check, with its row)."""
    cur.execute(query)
    while rows := cur.fetchmany(batch_size):
        writer.write("".join([f"{row[0]}\n" for row in rows]))
