"""A byte-exact JSON Lines editor: untouched lines are written back as they were."""

from __future__ import annotations

import json
from operator import attrgetter
from typing import IO, Any

import msgspec
from airflow.sdk import ObjectStoragePath

from airflow_provider_xcompliance.apply.plan import ObjectChanges, Plan
from airflow_provider_xcompliance.apply.rules import DELETE, SCRUB_GEO
from airflow_provider_xcompliance.exceptions import DataFormatError
from airflow_provider_xcompliance.object_storage import read_blocks

# A tweet with its expansions is kilobytes: an object without line feeds is not JSON Lines.
MAX_DATA_LINE = 16 * 1024 * 1024
_JSON_SPACE = b" \t\r"  # what msgspec's decode_lines skips as a blank line (besides the line feed)
_NULL = msgspec.Raw(b"null")
_DROP = b"\n"  # stands for a deleted line in a split run (no split line holds a line feed)


def jsonl_object(path: ObjectStoragePath, plan: Plan, changes: ObjectChanges, out: IO[bytes] | None) -> None:
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


def _decoder(plan: Plan) -> msgspec.json.Decoder:
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
        self, path: ObjectStoragePath, plan: Plan, changes: ObjectChanges, out: IO[bytes] | None
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
