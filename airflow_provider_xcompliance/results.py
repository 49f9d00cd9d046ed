"""The results of a job: landed in object storage and summarised as they stream, in flat memory."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator
from operator import attrgetter
from typing import IO, Any, Literal, TypedDict

import msgspec
from airflow.sdk import ObjectStoragePath

from airflow_provider_xcompliance.client.jobs import ComplianceJob
from airflow_provider_xcompliance.exceptions import InvalidResultsError
from airflow_provider_xcompliance.object_storage import Location, atomic_writer, to_path
from airflow_provider_xcompliance.utils.prefetch import read_ahead
from airflow_provider_xcompliance.utils.progress import Progress

# The values X documents (reference: "reason values seen"); others are counted too, more slowly.
_KnownAction = Literal["delete", "scrub_geo"]
_KnownReason = Literal["deleted", "bounced", "protected", "suspended", "scrub_geo", "deactivated"]


class _Result(msgspec.Struct, gc=False):
    """The fields of a result line that the summary reads; the others are skipped unparsed.
    ``id`` must be there, but is left raw (never made a Python object: twice as fast);
    ``action`` and ``reason`` take any value: unknown ones are counted, not refused."""

    id: msgspec.Raw
    action: Any = "unknown"
    reason: Any = "unknown"


class _KnownResult(msgspec.Struct, gc=False):
    """The common case, tried first: documented values only, decoded as ``Literal`` members,
    which are the same few string objects with their hashes kept, so they count faster
    (375 against 287 MB/s here). A run with any other value is decoded again as ``_Result``."""

    id: msgspec.Raw
    # An absent field is "unknown", outside the Literal: msgspec does not check defaults against
    # the type, while a line that says "unknown" itself must go to _Result (mypy cannot say both).
    action: _KnownAction = "unknown"  # type: ignore[assignment]
    reason: _KnownReason = "unknown"  # type: ignore[assignment]


# Lines decoded per call: a decode holds the GIL, and the threads that inflate and write the
# download wait for it after each read or write; 2 MiB calls starved them (4 ms at a time).
RUN_SIZE = 256 * 1024

_KNOWN_DECODER = msgspec.json.Decoder(_KnownResult)
_DECODER = msgspec.json.Decoder(_Result)
_reasons = attrgetter("reason")
_actions = attrgetter("action")


class ResultCounts(TypedDict):
    """What :meth:`ResultsSummary.as_dict` counts: these keys of a ``DownloadSummary``."""

    lines: int
    bytes: int
    by_action: dict[str, int]
    by_reason: dict[str, int]


class ResultsSummary:
    """Counts the lines, bytes, actions and reasons of a results stream.

    Fed with raw blocks as they arrive, so neither the file nor its IDs are ever held in
    memory. Each run of whole lines is decoded in one ``msgspec`` call into only the fields
    counted (with documented values first, then, if some value is not one, with any values);
    only when that fails too is the run decoded line by line, to say which line is broken.
    Duplicated IDs are counted as the lines they are (X sometimes reports an ID twice).
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines = 0
        self.bytes = 0
        self.by_action: Counter[str] = Counter()
        self.by_reason: Counter[str] = Counter()
        self._tail = b""
        self._lines_read = 0  # line feeds so far, blank lines included, for error messages

    def feed(self, block: bytes) -> None:
        self.bytes += len(block)
        cut = block.rfind(b"\n") + 1
        if not cut:
            self._tail += block
            return
        if self._tail:
            self._lines(b"".join((self._tail, memoryview(block)[:cut])))
        else:
            self._lines(block[:cut] if cut < len(block) else block)
        self._tail = block[cut:]

    def finish(self) -> None:
        """Count the last line, which may lack its newline."""
        tail, self._tail = self._tail, b""
        self._lines(tail)

    def _lines(self, data: bytes) -> None:
        view = memoryview(data)
        start = 0
        while start < len(data):
            end = data.find(b"\n", start + RUN_SIZE) + 1 or len(data)
            self._count(view[start:end])
            self._lines_read += data.count(b"\n", start, end)
            start = end

    def _count(self, run: memoryview) -> None:
        records: list[_KnownResult] | list[_Result]
        try:
            records = _KNOWN_DECODER.decode_lines(run)
        except (msgspec.DecodeError, msgspec.ValidationError):
            try:
                records = _DECODER.decode_lines(run)
            except (msgspec.DecodeError, msgspec.ValidationError):
                records = self._locate_error(bytes(run))
        self.lines += len(records)
        self.by_reason.update(map(_reasons, records))  # keys are made strings once, in as_dict
        self.by_action.update(map(_actions, records))

    def _locate_error(self, data: bytes) -> list[_Result]:
        records = []
        for number, line in enumerate(data.split(b"\n"), self._lines_read + 1):
            if not line.strip():
                continue
            try:
                records.append(_DECODER.decode(line))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                shown = line[:80].decode("utf-8", "replace")
                raise InvalidResultsError(
                    f"{self.source}, line {number}: {shown!r} is not a result ({exc})"
                ) from None
        return records

    def as_dict(self) -> ResultCounts:
        return ResultCounts(
            lines=self.lines,
            bytes=self.bytes,
            by_action=_as_strings(self.by_action),
            by_reason=_as_strings(self.by_reason),
        )


def _as_strings(counts: Counter[Any]) -> dict[str, int]:
    """Counts keyed by strings, sorted (a value such as ``null`` or ``3`` becomes ``"None"``, ``"3"``)."""
    merged: Counter[str] = Counter()
    for key, count in counts.items():
        merged[str(key)] += count
    return dict(sorted(merged.items()))


def results_target(destination: Location, job: ComplianceJob) -> ObjectStoragePath:
    if isinstance(destination, (str, os.PathLike)) and os.fspath(destination).endswith("/"):
        return to_path(destination) / f"{job.type or 'results'}-{job.id}.jsonl"
    return to_path(destination)


def land_results(
    blocks: Iterable[bytes], target: ObjectStoragePath, what: str, progress: Progress
) -> ResultsSummary:
    """Write a download's blocks to ``target`` (complete or not at all) and summarise them. The
    writes run in a thread of their own (they release the GIL) while this one summarises."""
    summary = ResultsSummary(what)
    with atomic_writer(target) as output:
        written = read_ahead(_written_through(blocks, output))
        try:
            for block in written:
                summary.feed(block)
                progress.update(summary.bytes, summary.lines)
        finally:
            written.close()
        summary.finish()
    return summary


def _written_through(blocks: Iterable[bytes], output: IO[bytes]) -> Iterator[bytes]:
    for block in blocks:
        output.write(block)
        yield block
