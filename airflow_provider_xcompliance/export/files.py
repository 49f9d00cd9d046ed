"""The IDs of a :class:`~airflow_provider_xcompliance.archives.FileArchive`: the ID fields of each
JSON Lines record or Parquet row (Parquet: those columns only, row group by row group), in flat
memory. X's API writes IDs as strings and SDKs often store them as numbers: both are read; any
other value is refused with its object, line or row, and field."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from airflow_provider_xcompliance.apply.files import data_objects
from airflow_provider_xcompliance.apply.jsonl import MAX_DATA_LINE
from airflow_provider_xcompliance.apply.parquet import pyarrow_modules
from airflow_provider_xcompliance.archives import FileArchive
from airflow_provider_xcompliance.exceptions import DataFormatError, InvalidIdError
from airflow_provider_xcompliance.export.writing import IdFileWriter
from airflow_provider_xcompliance.id_files import id_problem
from airflow_provider_xcompliance.object_storage import LineTooLong, Location, read_lines, to_path
from airflow_provider_xcompliance.reports import ExportReport
from airflow_provider_xcompliance.utils.logs import Log

_BATCH = 65_536  # IDs per block written


def export_file_ids(
    archive: FileArchive, job_type: str, ids_path: Location, log: Log | None = None
) -> ExportReport:
    """Write the data set's IDs for ``job_type`` to ``ids_path``."""
    started = time.monotonic()
    log = log or logging.getLogger(__name__)
    fields = archive.id_fields(job_type)
    objects = data_objects(to_path(archive.data_path), archive.format, None, log)
    decode = _record_decoder(fields)
    with IdFileWriter(ids_path, f"The IDs of {archive.name}") as writer:
        for path in objects:
            values = (
                _jsonl_ids(path, fields, decode) if archive.format == "jsonl" else _parquet_ids(path, fields)
            )
            for block in _blocks(values):
                writer.write(block)
    written = writer.written()
    log.info("Exported %d %s IDs of %d objects to %s", written.ids, job_type, len(objects), written.path)
    return ExportReport(
        job_type=job_type,
        archive=archive.name,
        path=str(written.path),
        ids=written.ids,
        bytes=written.bytes,
        seconds=round(time.monotonic() - started, 3),
    )


def _blocks(values: Iterator[str]) -> Iterator[bytes]:
    batch: list[str] = []
    for value in values:
        batch.append(value)
        if len(batch) >= _BATCH:
            yield ("\n".join(batch) + "\n").encode()
            batch = []
    if batch:
        yield ("\n".join(batch) + "\n").encode()


def _checked(value: Any, where: str, number: int, field: str) -> Iterator[str]:
    """``value`` as ID text (a list, as of an edit history, gives each of its items); None and an
    absent field give nothing."""
    if value is None:
        return
    if isinstance(value, list):
        for item in value:
            yield from _checked(item, where, number, field)
        return
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    problem = id_problem(text.encode()) if isinstance(text, str) else "not a number or a string of digits"
    if problem:
        raise InvalidIdError(f"{where}, field {field!r}", number, str(value), problem)
    yield text


def _record_decoder(fields: list[str]) -> Callable[[bytes], Any]:
    """A JSON decoder of only ``fields`` (as attributes ``f0``, ``f1``, ...): the rest is skipped."""
    names = [f"f{n}" for n in range(len(fields))]
    record = msgspec.defstruct(
        "Record", [(name, Any, None) for name in names], rename=dict(zip(names, fields, strict=True))
    )
    return msgspec.json.Decoder(record).decode


def _jsonl_ids(path: Any, fields: list[str], decode: Callable[[bytes], Any]) -> Iterator[str]:
    """The ID fields of each record; only those fields are decoded."""
    number = 0
    try:
        for number, line in enumerate(read_lines(path, MAX_DATA_LINE), 1):
            if not line.strip():
                continue
            try:
                decoded = decode(line)
            except msgspec.DecodeError as exc:
                raise DataFormatError(f"{path}, line {number}: not a JSON object ({exc})") from None
            for n, field in enumerate(fields):
                yield from _checked(getattr(decoded, f"f{n}"), str(path), number, field)
    except LineTooLong:
        raise DataFormatError(f"{path}, line {number + 1}: longer than {MAX_DATA_LINE} bytes") from None


def _parquet_ids(path: Any, fields: list[str]) -> Iterator[str]:
    """The ID columns, read alone, row group by row group."""
    _, _, pq = pyarrow_modules()
    with path.open("rb") as source:
        parquet = pq.ParquetFile(source)
        missing = [f for f in fields if f not in parquet.schema_arrow.names]
        if missing:
            raise DataFormatError(
                f"{path} has no column {missing[0]!r} (it has: {', '.join(parquet.schema_arrow.names)})"
            )
        row = 0
        for batch in parquet.iter_batches(columns=fields, batch_size=_BATCH):
            columns = [batch.column(field).to_pylist() for field in fields]
            for offset, values in enumerate(zip(*columns, strict=True)):
                for field, value in zip(fields, values, strict=True):
                    yield from _checked(value, str(path), row + offset + 1, field)
            row += batch.num_rows
