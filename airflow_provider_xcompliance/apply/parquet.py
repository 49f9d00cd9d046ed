"""Parquet objects matched and rewritten row group by row group."""

from __future__ import annotations

import bisect
from typing import IO, Any

from airflow.sdk import ObjectStoragePath

from airflow_provider_xcompliance.apply.plan import ObjectChanges, Plan
from airflow_provider_xcompliance.apply.rules import DELETE, SCRUB_GEO
from airflow_provider_xcompliance.exceptions import ApplyConfigError, DataFormatError


def pyarrow_modules() -> tuple[Any, Any, Any]:
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


def parquet_object(
    path: ObjectStoragePath,
    plan: Plan,
    changes: ObjectChanges,
    out: IO[bytes] | None,
    *,
    matcher: ParquetMatcher,
) -> None:
    """Count (and, given ``out``, write) one Parquet object's changes, row group by row group:
    the scan reads only the ID and geo columns; the rewrite keeps the schema and its metadata."""
    pa, pc, pq = pyarrow_modules()
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


class ParquetMatcher:
    """``is_in`` masks of one row group against the flagged IDs, with value sets built once per
    column type (ints compared as int64, strings as canonical digit strings)."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.pa, self.pc, _ = pyarrow_modules()
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
    plan: Plan,
    record_column: str | None,
    changes: ObjectChanges,
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
