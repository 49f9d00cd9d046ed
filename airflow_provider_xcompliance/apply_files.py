"""Applying results to a data set of JSON Lines or Parquet objects, in any object store.

The flagged IDs are read once into memory; the objects are then streamed twice, block by block
(JSON Lines) or row group by row group (Parquet), so memory follows the flagged IDs and never the
data set:

1. a read-only scan counts what each object would lose, so that ``max_delete_fraction`` and
   ``dry_run`` can answer before anything is written;
2. only the objects that change are rewritten, each atomically (complete or not at all), with
   every untouched JSON line written back byte for byte.

A second run over the same results changes nothing: deleted records are gone, and a record whose
geo fields are all null is not counted as a change.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from operator import attrgetter
from typing import IO, Any

import msgspec
from airflow.sdk import ObjectStoragePath

from airflow_provider_xcompliance.changes import (
    DELETE,
    KEEP,
    SCRUB_GEO,
    ApplyConfigError,
    ApplyReport,
    AuditIdentity,
    ChangeRules,
    add_counts,
    check_delete_fraction,
    new_report,
    read_flagged,
    utc_now_text,
)
from airflow_provider_xcompliance.exceptions import XComplianceError
from airflow_provider_xcompliance.models import parse_timestamp
from airflow_provider_xcompliance.storage import (
    LOCAL_PROTOCOLS,
    Location,
    atomic_writer,
    read_blocks,
    to_path,
)

log = logging.getLogger(__name__)

FORMATS = {"jsonl": (".jsonl", ".json"), "parquet": (".parquet",)}
# A tweet with its expansions is kilobytes: an object without line feeds is not JSON Lines.
MAX_DATA_LINE = 16 * 1024 * 1024
_JSON_SPACE = b" \t\r"  # what msgspec's decode_lines skips as a blank line (besides the line feed)
_NULL = msgspec.Raw(b"null")
_DROP = b"\n"  # stands for a deleted line in a split run (no split line holds a line feed)
_RANK = {SCRUB_GEO: 1, DELETE: 2}  # an ID flagged more than once: delete wins over scrub_geo


class DataFormatError(XComplianceError):
    """An object of the data set is not what ``format`` and the field names say (a broken JSON
    line, a missing ID field or column)."""


@dataclass
class _Flagged:
    """The flagged IDs that ask for a change, as ints: about 100 bytes per ID in a dict (the
    ``(change, reason)`` values are shared), so memory follows the results, not the data set."""

    changes: dict[int, tuple[str, str]] = field(default_factory=dict)
    partitions: set[str] | None = None  # the folders to read; None: every object
    lines: int = 0
    kept: Counter[str] = field(default_factory=Counter)
    _kinds: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)

    def add(self, record_id: int, change: str, reason: str) -> None:
        known = self.changes.get(record_id)
        if known is None or _RANK[change] > _RANK[known[0]]:
            self.changes[record_id] = self._kinds.setdefault((change, reason), (change, reason))


@dataclass(frozen=True)
class _Plan:
    """What a record is matched on and what a match does, for one run."""

    flagged: dict[int, tuple[str, str]]
    match_field: str  # the tweet's ID (tweets jobs) or its author's ID (users jobs)
    id_field: str
    geo_fields: tuple[str, ...]
    by_author: bool


@dataclass
class _ObjectChanges:
    """What one object holds and loses; ``audit`` collects ``(record id, reason, change)`` of
    each changed record when the object is rewritten."""

    records: int = 0
    deleted: Counter[str] = field(default_factory=Counter)
    updated: Counter[str] = field(default_factory=Counter)
    audit: list[tuple[str | None, str, str]] | None = None

    @property
    def count(self) -> int:
        return sum(self.deleted.values()) + sum(self.updated.values())

    def add(self, change: str, reason: str, record_id: Any) -> None:
        (self.deleted if change == DELETE else self.updated)[reason] += 1
        if self.audit is not None:
            self.audit.append((None if record_id is None else str(record_id), reason, change))


def apply_to_files(
    results_path: Location,
    rules: ChangeRules,
    data_path: Location,
    *,
    format: str = "jsonl",
    id_field: str = "id",
    author_id_field: str | None = None,
    geo_fields: Sequence[str] = (),
    partition_template: str | None = None,
    audit: AuditIdentity | None = None,
    audit_path: Location | None = None,
    job_id: str | None = None,
    run_id: str | None = None,
    max_delete_fraction: float | None = None,
    dry_run: bool = False,
    log: logging.Logger = log,
) -> ApplyReport:
    """Delete and scrub the flagged records of the JSON Lines or Parquet objects under ``data_path``.

    ``data_path`` is one object or a folder (every ``.jsonl``/``.json`` or ``.parquet`` object
    under it; names starting with ``.`` or ``_`` are skipped). Tweets jobs match ``id_field``;
    users jobs delete every record whose ``author_id_field`` is a flagged user.
    ``partition_template`` (``"date={created_at:%Y-%m-%d}"``) limits a tweets job to the folders
    of the flagged tweets' creation dates (UTC). The results are read whole before any object is
    touched, so a broken results line changes nothing; memory holds the flagged IDs (about 100
    bytes each) and one block or row group, however large the data set.

    A failure stops at an object boundary: each object is old or new, never half written. The
    audit (with both ``audit`` and ``audit_path``) is one JSON Lines object written after the
    rewrites, or after a failed one for the objects already rewritten; ``max_delete_fraction``
    counts the records of the objects read (the flagged partitions only, when pruning).
    """
    started = time.monotonic()
    data = to_path(data_path)
    target = str(data)
    report = new_report(rules, job_id, results_path, target, dry_run)
    plan = _plan(rules, format, id_field, author_id_field, geo_fields)
    audit_dir = _audit_dir(audit, audit_path, data)
    partition_of = None
    if partition_template is not None and plan.by_author:
        log.info("partition_template ignored: a users job deletes a user's tweets in every partition")
    elif partition_template is not None:
        partition_of = _partitioner(partition_template)

    flagged = _read_results(results_path, rules, partition_of, log)
    report["result_lines"] = flagged.lines
    report["kept"] = dict(sorted(flagged.kept.items()))
    plan = replace(plan, flagged=flagged.changes)
    if not plan.geo_fields and any(change == SCRUB_GEO for change, _ in flagged.changes.values()):
        raise ApplyConfigError(
            "The results ask to remove geo data (scrub_geo) but geo_fields is empty: name the "
            "geo fields, or pass overrides={'scrub_geo': 'keep'} if the data set holds none. "
            "Nothing was changed"
        )
    log.info(
        "Read %d result lines from %s: %d IDs to act on; overrides keep %d",
        flagged.lines,
        results_path,
        len(flagged.changes),
        sum(flagged.kept.values()),
    )

    objects = _objects(data, format, flagged.partitions, log) if flagged.changes else []
    process: _Process = _jsonl_object
    if format == "parquet":
        process = partial(_parquet_object, matcher=_ParquetMatcher(plan))  # value sets built once

    # Pass 1: read-only, so that the guard and dry_run answer before anything is written.
    scanned: list[tuple[ObjectStoragePath, _ObjectChanges]] = []
    total = deleting = 0
    for path in objects:
        changes = _ObjectChanges()
        process(path, plan, changes, None)
        total += changes.records
        deleting += sum(changes.deleted.values())
        if changes.count:
            scanned.append((path, changes))
    log.info(
        "Scanned %d objects, %d records: %d objects to rewrite (%d records to delete, %d to scrub)",
        len(objects),
        total,
        len(scanned),
        deleting,
        sum(sum(c.updated.values()) for _, c in scanned),
    )
    check_delete_fraction(max_delete_fraction, target, deleting, total)

    if dry_run:
        for path, changes in scanned:
            _add_to_report(report, path, changes)
        log.info("Dry run: nothing was written")
    else:
        _rewrite(scanned, plan, process, report, audit, audit_dir, job_id, run_id, log)
    if not report["changed"]:
        log.info("Nothing to change in %s (the results may have been applied already)", target)
    report["seconds"] = round(time.monotonic() - started, 3)
    return report


# --- configuration and results --------------------------------------------------------------


def _plan(
    rules: ChangeRules, format: str, id_field: str, author_id_field: str | None, geo_fields: Sequence[str]
) -> _Plan:
    """Check the options before anything is read."""
    if format not in FORMATS:
        raise ApplyConfigError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
    if format == "parquet":
        _pyarrow()  # a missing extra fails before the results are read
    by_author = rules.job_type == "users"
    if by_author and not author_id_field:
        raise ApplyConfigError(
            "A users job deletes every tweet of a flagged user: author_id_field must name the "
            "field that holds a tweet's author ID"
        )
    match_field = author_id_field if by_author else id_field
    geo = () if by_author else tuple(geo_fields)
    names = [match_field, *geo] + ([id_field] if by_author else [])
    if not all(isinstance(name, str) and name for name in names) or len(set(names)) != len(names):
        raise ApplyConfigError(
            f"id_field, author_id_field and geo_fields must be distinct names, not {names}"
        )
    return _Plan({}, match_field, id_field, geo, by_author)


def _partitioner(template: str) -> Callable[[datetime], str]:
    """The partition folder of a creation time. A template that ignores the time of day (the
    usual ``date=…``) is formatted once per day: strftime would otherwise cost more than
    reading the result line."""
    early = datetime(2000, 1, 2, 2, 3, 4, 5, tzinfo=UTC)
    late = datetime(2000, 1, 2, 13, 14, 15, 16, tzinfo=UTC)
    try:
        by_day = _folder(template, early) == _folder(template, late)
    except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
        raise ApplyConfigError(
            f"partition_template {template!r} cannot be formatted with created_at alone ({exc!r})"
        ) from None
    if not by_day:
        return lambda created: _folder(template, created)
    days: dict[Any, str] = {}

    def partition_of(created: datetime) -> str:
        day = created.date()
        if day not in days:
            days[day] = _folder(template, created)
        return days[day]

    return partition_of


def _folder(template: str, created: datetime) -> str:
    folder = template.format(created_at=created)
    parts = folder.strip("/").split("/")
    if folder.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ApplyConfigError(f"partition_template {template!r} gives {folder!r}, not a relative folder")
    return "/".join(parts)


def _read_results(
    results_path: Location,
    rules: ChangeRules,
    partition_of: Callable[[datetime], str] | None,
    log: logging.Logger,
) -> _Flagged:
    """All flagged IDs, read before any object is: a broken results line fails here. With a
    template, also the partitions they fall in (None when a record's date is unknown)."""
    flagged = _Flagged(partitions=set() if partition_of is not None else None)
    undated = 0
    for record in read_flagged(results_path, rules):
        flagged.lines += 1
        if record.change == KEEP:
            flagged.kept[record.reason] += 1
            continue
        flagged.add(int(record.id), record.change, record.reason)
        if partition_of is None:
            continue
        created = _created_at(record.created_at)
        if created is None:
            undated += 1
        elif flagged.partitions is not None:
            flagged.partitions.add(partition_of(created))
    if undated:
        flagged.partitions = None
        log.info(
            "Reading every object, not only the template's partitions: %d flagged records have "
            "no readable created_at, so their partitions are unknown",
            undated,
        )
    return flagged


def _created_at(text: str | None) -> datetime | None:
    """The UTC time of the API's ``.000Z`` and ``+00:00`` forms through ``fromisoformat``
    (20 times faster than pendulum, which ``parse_timestamp`` uses for any other form)."""
    if not text:
        return None
    try:
        created = datetime.fromisoformat(text)
    except ValueError:
        created = parse_timestamp(text)
        if created is None:
            return None
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)  # as pendulum reads a time without offset
    return created.astimezone(UTC)


def _audit_dir(
    audit: AuditIdentity | None, audit_path: Location | None, data: ObjectStoragePath
) -> ObjectStoragePath | None:
    if audit_path is None:
        return None
    if audit is None:
        raise ApplyConfigError("audit_path is set but audit (how rows name records) is not")
    folder = to_path(audit_path)
    inside = f"{folder.path.rstrip('/')}/".startswith(f"{data.path.rstrip('/')}/")
    if folder.protocol == data.protocol and inside:
        raise ApplyConfigError(
            f"audit_path {folder} lies inside data_path {data}: the audit objects would be read as data"
        )
    return folder


# --- listing ---------------------------------------------------------------------------------


def _objects(
    data: ObjectStoragePath, format: str, partitions: set[str] | None, log: logging.Logger
) -> list[ObjectStoragePath]:
    """The objects to read: ``data`` itself, or the data files under it (or under the flagged
    partitions only), hidden names skipped, in a stable order."""
    fs, base = data.fs, data.path.rstrip("/")
    fs.invalidate_cache(base)
    if fs.isfile(base):
        if partitions is not None:
            log.info("partition_template ignored: data_path %s is a single object", data)
        return [data]
    if not fs.isdir(base):
        raise ApplyConfigError(f"data_path {data} holds no object and no folder")
    folders = [""] if partitions is None else sorted(partitions)
    if partitions is not None:
        log.info("Partition pruning: reading %d partitions of %s", len(folders), data)
    suffixes = FORMATS[format]
    found: list[str] = []
    ignored = 0
    for folder in folders:
        root = f"{base}/{folder}".rstrip("/")
        if folder and not fs.isdir(root):
            continue  # no data for those dates
        for key in fs.find(root):
            relative = key[len(base) :].lstrip("/")
            if not key.startswith(f"{root}/") or any(part[:1] in "._" for part in relative.split("/")):
                continue
            if relative.lower().endswith(suffixes):
                found.append(relative)
            else:
                ignored += 1
    if ignored:
        log.info(
            "Ignored %d objects under %s whose names do not end in %s", ignored, data, "/".join(suffixes)
        )
    return [data / relative for relative in sorted(found)]


# --- JSON Lines ------------------------------------------------------------------------------


def _jsonl_object(
    path: ObjectStoragePath, plan: _Plan, changes: _ObjectChanges, out: IO[bytes] | None
) -> None:
    """Count (and, given ``out``, write) one JSON Lines object's changes, block by block.

    The whole lines of a block are handed on as a view, not a copy; only the line cut by a
    block's edge is joined from its two pieces.
    """
    editor = _JsonlEditor(path, plan, changes, out)
    tail = b""
    offset = 0  # of the block in the object
    for block in read_blocks(path):
        cut = block.rfind(b"\n") + 1
        if not cut:
            tail += block
            if len(tail) > MAX_DATA_LINE:
                line = _line_number(path, offset + len(block) - len(tail), 0)
                raise DataFormatError(
                    f"{path}, line {line}: longer than {MAX_DATA_LINE} bytes, not JSON Lines"
                )
        else:
            start = 0
            if tail:
                start = block.find(b"\n") + 1
                editor.lines(tail + block[:start], offset - len(tail))
            if start < cut:
                editor.lines(memoryview(block)[start:cut], offset + start)
            tail = block[cut:]
        offset += len(block)
    if tail:
        editor.lines(tail, offset - len(tail))


def _line_number(path: ObjectStoragePath, offset: int, index: int) -> int:
    """The number of line ``index`` of the run at ``offset``. Counted only for an error
    message: counting every block's line feeds would cost a third of a scan."""
    before = 0
    for block in read_blocks(path):
        if offset <= 0:
            break
        before += block.count(b"\n", 0, offset)
        offset -= len(block)
    return before + index + 1


_DECODERS: dict[tuple[Any, ...], msgspec.json.Decoder] = {}


def _decoder(plan: _Plan) -> msgspec.json.Decoder:
    """A decoder of only the fields a run needs; IDs may be JSON strings or numbers and are
    decoded to ints either way (``strict=False``), the form the flagged IDs are kept in."""
    key = (plan.match_field, plan.id_field, plan.geo_fields, plan.by_author)
    if key not in _DECODERS:
        fields: list[tuple[str, Any, Any]] = [("match", int | None | msgspec.UnsetType, msgspec.UNSET)]
        rename = {"match": plan.match_field}
        if plan.by_author:
            fields.append(("record", msgspec.Raw, _NULL))  # parsed only for a deleted record's audit row
            rename["record"] = plan.id_field
        for number, name in enumerate(plan.geo_fields):
            fields.append((f"geo{number}", msgspec.Raw, _NULL))  # raw: a null test, never parsed
            rename[f"geo{number}"] = name
        struct = msgspec.defstruct("DataRecord", fields, rename=rename, gc=False)
        _DECODERS[key] = msgspec.json.Decoder(struct, strict=False)
    return _DECODERS[key]


_match = attrgetter("match")


def _record_id(raw: msgspec.Raw) -> Any:
    value = msgspec.json.decode(raw)
    return value if isinstance(value, (str, int)) and not isinstance(value, bool) else None


class _JsonlEditor:
    """Decodes runs of whole lines in one ``decode_lines`` call and, only for a run holding a
    flagged record, splits it into lines to drop or rewrite them; other runs pass through as
    the bytes they were."""

    def __init__(
        self, path: ObjectStoragePath, plan: _Plan, changes: _ObjectChanges, out: IO[bytes] | None
    ) -> None:
        self.path = path
        self.plan = plan
        self.changes = changes
        self.out = out
        self.decoder = _decoder(plan)
        self.geo = attrgetter(*(f"geo{n}" for n in range(len(plan.geo_fields)))) if plan.geo_fields else None

    def lines(self, data: bytes | memoryview, offset: int) -> None:
        """Count, and write when rewriting, a run of lines that starts at ``offset``."""
        try:
            records = self.decoder.decode_lines(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            records = self._locate_error(bytes(data), offset)
        self.changes.records += len(records)
        keys = list(map(_match, records))
        flagged = self.plan.flagged
        if msgspec.UNSET in keys:
            self._missing_id(bytes(data), offset, keys.index(msgspec.UNSET))
        if not flagged.keys().isdisjoint(keys):
            edits: dict[int, str] = {}  # record number in the run -> change
            for number, key in enumerate(keys):
                if key not in flagged:
                    continue
                change, reason = flagged[key]
                record = records[number]
                if change == SCRUB_GEO and not self._has_geo(record):
                    continue  # already scrubbed: no change, so a second run changes nothing
                edits[number] = change
                self.changes.add(change, reason, _record_id(record.record) if self.plan.by_author else key)
            if edits and self.out is not None:
                data = self._edit(bytes(data), len(records), edits)
        if self.out is not None:
            self.out.write(data)

    def _has_geo(self, record: Any) -> bool:
        values = self.geo(record)  # type: ignore[misc]
        if len(self.plan.geo_fields) == 1:
            return values != _NULL
        return any(value != _NULL for value in values)

    def _edit(self, data: bytes, records: int, edits: dict[int, str]) -> bytes:
        lines = data.split(b"\n")
        # decode_lines skips blank lines: only when there are some do records and lines differ
        if len(lines) - (not lines[-1]) == records:
            at = list(range(records))
        else:
            at = [number for number, line in enumerate(lines) if line.strip(_JSON_SPACE)]
        for number, change in edits.items():
            line = at[number]
            lines[line] = _DROP if change == DELETE else self._scrubbed(lines[line])
        return b"\n".join([line for line in lines if line is not _DROP])

    def _scrubbed(self, line: bytes) -> bytes:
        """The line with its geo fields set to null; every other field kept, in order."""
        end = b"\r" if line.endswith(b"\r") else b""
        record = json.loads(line)
        for name in self.plan.geo_fields:
            if name in record:
                record[name] = None
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + end

    def _missing_id(self, data: bytes, offset: int, record: int) -> None:
        lines = data.split(b"\n")
        index = [number for number, line in enumerate(lines) if line.strip(_JSON_SPACE)][record]
        shown = lines[index][:80].decode("utf-8", "replace")
        raise DataFormatError(
            f"{self.path}, line {_line_number(self.path, offset, index)}: {shown!r} has no "
            f"{self.plan.match_field!r} field (check id_field / author_id_field)"
        )

    def _locate_error(self, data: bytes, offset: int) -> list[Any]:
        records = []
        for index, line in enumerate(data.split(b"\n")):
            if not line.strip(_JSON_SPACE):
                continue
            try:
                records.append(self.decoder.decode(line))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                shown = line[:80].decode("utf-8", "replace")
                number = _line_number(self.path, offset, index)
                raise DataFormatError(
                    f"{self.path}, line {number}: {shown!r} is not a data record ({exc})"
                ) from None
        return records


# --- Parquet ---------------------------------------------------------------------------------


def _pyarrow() -> tuple[Any, Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError:
        raise ApplyConfigError(
            "format='parquet' needs pyarrow: install the provider's parquet extra "
            "(pip install 'airflow-provider-xcompliance[parquet]')"
        ) from None
    return pa, pc, pq


def _parquet_object(
    path: ObjectStoragePath,
    plan: _Plan,
    changes: _ObjectChanges,
    out: IO[bytes] | None,
    *,
    matcher: _ParquetMatcher,
) -> None:
    """Count (and, given ``out``, write) one Parquet object's changes, row group by row group:
    the scan reads only the ID and geo columns; the rewrite keeps the schema and its metadata."""
    pa, pc, pq = _pyarrow()
    with path.open("rb") as source:
        try:
            parquet = pq.ParquetFile(source)
        except (pa.ArrowException, OSError) as exc:
            raise DataFormatError(f"{path}: not a Parquet file ({exc})") from None
        schema = parquet.schema_arrow
        if plan.match_field not in schema.names:
            raise DataFormatError(
                f"{path} has no column {plan.match_field!r} (check id_field / author_id_field); "
                f"its columns: {', '.join(schema.names)}"
            )
        geo = [name for name in plan.geo_fields if name in schema.names]
        required = [name for name in geo if not schema.field(name).nullable]
        if required:
            raise DataFormatError(
                f"{path}: geo columns {required} are not nullable, so they cannot be scrubbed"
            )
        record_column = plan.id_field if plan.by_author and plan.id_field in schema.names else None
        needed = [plan.match_field, *geo] + ([record_column] if record_column else [])
        changes.records += parquet.metadata.num_rows
        writer = None
        if out is not None:
            writer = pq.ParquetWriter(out, schema, compression=_compression(parquet))
        try:
            for group in range(parquet.num_row_groups):
                table = parquet.read_row_group(group, columns=None if writer else needed)
                deleting, scrubbing = matcher.masks(table, geo, path)
                for mask, change in ((deleting, DELETE), (scrubbing, SCRUB_GEO)):
                    if mask is not None:
                        _count_rows(table, mask, change, plan, record_column, changes, pc)
                if writer is not None:
                    for name in geo if scrubbing is not None else ():
                        column = table.column(name)
                        nulled = pc.if_else(scrubbing, pa.scalar(None, column.type), column)
                        table = table.set_column(schema.get_field_index(name), schema.field(name), nulled)
                    if deleting is not None:
                        table = table.filter(pc.invert(deleting))
                    if table.num_rows:
                        writer.write_table(table, row_group_size=table.num_rows)
        finally:
            if writer is not None:
                writer.close()


def _compression(parquet: Any) -> str:
    """The codec of the object's first column chunk, so a rewrite is compressed as before."""
    if not parquet.metadata.num_row_groups or not parquet.metadata.num_columns:
        return "snappy"
    codec = parquet.metadata.row_group(0).column(0).compression
    return "none" if codec == "UNCOMPRESSED" else codec.lower()


class _ParquetMatcher:
    """``is_in`` masks of one row group against the flagged IDs, with value sets built once per
    column type (ints compared as int64, strings as canonical digit strings)."""

    def __init__(self, plan: _Plan) -> None:
        self.plan = plan
        self.pa, self.pc, _ = _pyarrow()
        self._sets: dict[tuple[str, str], Any] = {}

    def masks(self, table: Any, geo: list[str], path: Any) -> tuple[Any, Any]:
        pc = self.pc
        column = self._comparable(table.column(self.plan.match_field), path)
        deleting = pc.is_in(column, value_set=self._value_set(DELETE, column))
        scrubbing = None
        if geo:
            scrubbing = pc.is_in(column, value_set=self._value_set(SCRUB_GEO, column))
            present = [pc.is_valid(table.column(name)) for name in geo]
            scrubbing = pc.and_(scrubbing, _or_all(present, pc))
        return (
            deleting if pc.any(deleting).as_py() else None,
            scrubbing if scrubbing is not None and pc.any(scrubbing).as_py() else None,
        )

    def _comparable(self, column: Any, path: Any) -> Any:
        pa = self.pa
        kind = column.type
        if pa.types.is_dictionary(kind):
            column, kind = column.cast(kind.value_type), kind.value_type
        if pa.types.is_integer(kind):
            return column if kind == pa.uint64() else column.cast(pa.int64())
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            return column
        raise DataFormatError(
            f"{path}: column {self.plan.match_field!r} is {kind}, not integer or string IDs"
        )

    def _value_set(self, change: str, column: Any) -> Any:
        """The flagged IDs that can be in ``column``. For integer columns, only those between its
        smallest and largest value: ``is_in`` hashes its whole value set on every call, and a
        row group of a date partition spans a narrow range of snowflake IDs."""
        pa, kind = self.pa, column.type
        key = (change, str(kind))
        if key not in self._sets:
            ids = sorted(
                record_id for record_id, (wanted, _) in self.plan.flagged.items() if wanted == change
            )
            if pa.types.is_integer(kind):
                limit = 2**64 if kind == pa.uint64() else 2**63  # a larger ID cannot be in the column
                ids = ids[: bisect.bisect_left(ids, limit)]
                self._sets[key] = (ids, pa.array(ids, kind))
            else:
                self._sets[key] = (ids, pa.array([str(record_id) for record_id in ids], kind))
        ids, values = self._sets[key]
        if not pa.types.is_integer(kind) or not len(column) or len(ids) < 4096:
            return values
        bounds = self.pc.min_max(column).as_py()
        if bounds["min"] is None:
            return values.slice(0, 0)
        lo = bisect.bisect_left(ids, bounds["min"])
        return values.slice(lo, bisect.bisect_right(ids, bounds["max"]) - lo)


def _or_all(masks: list[Any], pc: Any) -> Any:
    combined = masks[0]
    for mask in masks[1:]:
        combined = pc.or_(combined, mask)
    return combined


def _count_rows(
    table: Any,
    mask: Any,
    change: str,
    plan: _Plan,
    record_column: str | None,
    changes: _ObjectChanges,
    pc: Any,
) -> None:
    """Count the (few) matched rows by reason, and note them for the audit."""
    rows = pc.indices_nonzero(mask)
    keys = table.column(plan.match_field).take(rows).to_pylist()
    if record_column:
        records = table.column(record_column).take(rows).to_pylist()
    elif plan.by_author:
        records = [None] * len(keys)
    else:
        records = keys
    for key, record in zip(keys, records, strict=True):
        changes.add(change, plan.flagged[int(key)][1], record)


# --- rewriting and the audit -----------------------------------------------------------------

# Counts one object's changes into _ObjectChanges and, given a file, writes the changed object.
_Process = Callable[[ObjectStoragePath, _Plan, _ObjectChanges, "IO[bytes] | None"], None]


def _rewrite(
    scanned: list[tuple[ObjectStoragePath, _ObjectChanges]],
    plan: _Plan,
    process: _Process,
    report: ApplyReport,
    audit: AuditIdentity | None,
    audit_dir: ObjectStoragePath | None,
    job_id: str | None,
    run_id: str | None,
    log: logging.Logger,
) -> None:
    """Rewrite each changed object atomically. The audit is written after the rewrites, and
    also after a failed one, for the objects already rewritten: their records are gone, and a
    rerun would no longer see them."""
    done: list[tuple[ObjectStoragePath, _ObjectChanges, str]] = []

    def write_audit() -> None:
        if audit_dir is not None and audit is not None and any(changes.count for _, changes, _ in done):
            written = _write_audit(audit_dir, audit, done, job_id, run_id)
            log.info("Audit of %d changed records written to %s", sum(c.count for _, c, _ in done), written)

    try:
        for path, _ in scanned:
            changes = _ObjectChanges(audit=[] if audit_dir is not None else None)
            _rewrite_object(path, plan, process, changes)
            done.append((path, changes, utc_now_text()))
            _add_to_report(report, path, changes)
            log.info(
                "Rewrote %s: %d records deleted, %d scrubbed",
                path,
                sum(changes.deleted.values()),
                sum(changes.updated.values()),
            )
    except BaseException:
        log.error(
            "Rewriting stopped after %d of %d objects; each object is whole, old or new",
            len(done),
            len(scanned),
        )
        try:
            write_audit()
        except Exception:  # the rewrite's own error is the one to raise
            log.exception("The audit of the %d objects already rewritten could not be written", len(done))
        raise
    write_audit()


def _rewrite_object(path: ObjectStoragePath, plan: _Plan, process: _Process, changes: _ObjectChanges) -> None:
    mode = os.stat(path.path).st_mode & 0o7777 if path.protocol in LOCAL_PROTOCOLS else None
    with atomic_writer(path) as out:
        if mode is not None:
            os.fchmod(out.fileno(), mode)  # the rename must not widen or narrow who may read the data
        process(path, plan, changes, out)


def _add_to_report(report: ApplyReport, path: ObjectStoragePath, changes: _ObjectChanges) -> None:
    add_counts(report, str(path), DELETE, changes.deleted)
    add_counts(report, str(path), SCRUB_GEO, changes.updated)


def _write_audit(
    folder: ObjectStoragePath,
    audit: AuditIdentity,
    done: list[tuple[ObjectStoragePath, _ObjectChanges, str]],
    job_id: str | None,
    run_id: str | None,
) -> ObjectStoragePath:
    """One JSON Lines object, one row per changed record, named by keyed hash unless the user
    asked for plain IDs."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", job_id or "job")
    path = folder / f"{name}-{stamp}.jsonl"
    encode = msgspec.json.Encoder().encode
    with atomic_writer(path) as out:
        for target, changes, applied_at in done:
            batch = [
                encode(
                    {
                        "record_key": None if record_id is None else audit.record_key(record_id),
                        "record_type": "tweet",
                        "target": str(target),
                        "reason": reason,
                        "change": change,
                        "job_id": job_id,
                        "run_id": run_id,
                        "applied_at": applied_at,
                    }
                )
                for record_id, reason, change in changes.audit or ()
            ]
            if batch:
                out.write(b"\n".join(batch) + b"\n")
    return path
