"""An ID file written as it is exported: every line checked and made canonical by the upload's own
rules (:class:`~airflow_provider_xcompliance.id_files.IdNormalizer`), the object appearing whole
or not at all."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import IO

from airflow.sdk import ObjectStoragePath

from airflow_provider_xcompliance.id_files import IdNormalizer
from airflow_provider_xcompliance.object_storage import BLOCK_SIZE, Location, atomic_writer, to_path


@dataclass(frozen=True)
class WrittenIds:
    """Where the ID file is, and how many IDs and bytes it holds."""

    path: ObjectStoragePath
    ids: int
    bytes: int


class IdFileWriter:
    """Takes blocks of ``ID\\n`` lines (pushed with :meth:`write`, as a database driver's copy
    does), checks and writes them; ``source`` names where they come from in errors."""

    def __init__(self, path: Location, source: str) -> None:
        self.path = to_path(path)
        self.normalizer = IdNormalizer(source)
        self._stack = ExitStack()
        self._out: IO[bytes] | None = None
        self._pending: list[bytes | str | memoryview] = []  # drivers hand over a row at a time
        self._pending_bytes = 0

    def __enter__(self) -> IdFileWriter:
        self._out = self._stack.enter_context(atomic_writer(self.path))
        return self

    def write(self, block: bytes | str | memoryview) -> int:
        """Take a block (a driver's row, often); blocks are checked and written a few MiB at a
        time, so that a row costs a list append."""
        self._pending.append(block)
        self._pending_bytes += len(block)
        if self._pending_bytes >= BLOCK_SIZE:
            self._flush()
        return len(block)

    def _flush(self) -> None:
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        if not pending:
            return
        text = isinstance(pending[0], str)
        data = "".join(pending).encode() if text else b"".join(pending)  # type: ignore[arg-type]
        clean = self.normalizer.feed(data)
        if clean and self._out is not None:
            self._out.write(clean)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            if error is None:
                self._flush()
                last = self.normalizer.finish()
                if last and self._out is not None:
                    self._out.write(last)
        except BaseException as exc:  # a bad last line: the object must not appear
            self._stack.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._stack.__exit__(kind, error, trace)

    def written(self) -> WrittenIds:
        return WrittenIds(self.path, self.normalizer.ids, self.normalizer.bytes_out)


def write_id_file(blocks: Iterable[bytes], path: Location, source: str) -> WrittenIds:
    with IdFileWriter(path, source) as writer:
        for block in blocks:
            writer.write(block)
    return writer.written()
