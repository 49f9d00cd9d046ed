"""Streaming validation and normalisation of ID files.

An ID file is one tweet or user ID per line: 1 to 19 decimal digits. Blank lines, surrounding
whitespace, CRLF line ends and a UTF-8 byte-order mark are tolerated and normalised away; any
other line stops the stream with an :class:`InvalidIdError` naming the source and line number,
so that nothing after it is sent and the upload is never completed.

Blocks that are already clean (the common case) pass through after one regular-expression
check, so throughput is that of the regex engine, not of a Python loop per line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from airflow_provider_xcompliance.exceptions import InvalidIdError

BOM = b"\xef\xbb\xbf"
_CLEAN_BLOCK = re.compile(rb"(?:[0-9]{1,19}\n)*")
_ID = re.compile(rb"[0-9]{1,19}")
MAX_LINE = 4096  # no ID line is this long; a file without line feeds must not fill memory


class IdNormalizer:
    """Turns blocks of raw bytes into blocks of clean ``ID\\n`` lines, counting as it goes."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.ids = 0
        self.bytes_out = 0
        self._lines_done = 0
        self._tail = b""
        self._started = False

    def feed(self, block: bytes) -> bytes:
        """Clean the complete lines of ``block``; an unfinished last line waits for the next block."""
        if not self._started and (self._tail or block):
            data = self._tail + block
            if len(data) < len(BOM) and BOM.startswith(data):
                self._tail = data
                return b""
            self._started = True
            self._tail, block = b"", data.removeprefix(BOM)
        cut = block.rfind(b"\n") + 1
        if not cut:
            self._tail += block
            if len(self._tail) > MAX_LINE:
                raise InvalidIdError(self.source, self._lines_done + 1, self._tail[:40].replace(b"\r", b"\\r"))
            return b""
        lines, self._tail = self._tail + block[:cut], block[cut:]
        return self._clean(lines)

    def finish(self) -> bytes:
        """Clean what is left after the last block (a last line without a newline)."""
        tail, self._tail = self._tail, b""
        self._started = True
        return self._clean(tail + b"\n") if tail.strip() else b""

    def _clean(self, lines: bytes) -> bytes:
        if _CLEAN_BLOCK.fullmatch(lines):
            clean = lines
            count = lines.count(b"\n")
            self._lines_done += count
        else:
            kept = []
            for line in lines.split(b"\n")[:-1]:
                self._lines_done += 1
                value = line.strip()
                if not value:
                    continue
                if not _ID.fullmatch(value):
                    raise InvalidIdError(self.source, self._lines_done, value)
                kept.append(value)
            count = len(kept)
            clean = b"\n".join(kept) + b"\n" if kept else b""
        self.ids += count
        self.bytes_out += len(clean)
        return clean


def normalized_blocks(blocks: Iterable[bytes], source: str, normalizer: IdNormalizer | None = None) -> Iterator[bytes]:
    """Clean every block of ``blocks``; pass a normalizer to read its counts afterwards."""
    normalizer = normalizer or IdNormalizer(source)
    for block in blocks:
        clean = normalizer.feed(block)
        if clean:
            yield clean
    last = normalizer.finish()
    if last:
        yield last


def blocks_from_ids(ids: Iterable[int | str], batch: int = 65536) -> Iterator[bytes]:
    """Encode an iterable of IDs as newline-terminated blocks, ``batch`` IDs at a time."""
    buffer: list[str] = []
    for value in ids:
        text = str(value)
        if "\n" in text or "\r" in text:  # one item must stay one line, so errors point at it
            text = text.replace("\r", "\\r").replace("\n", "\\n")
        buffer.append(text)
        if len(buffer) >= batch:
            yield ("\n".join(buffer) + "\n").encode()
            buffer.clear()
    if buffer:
        yield ("\n".join(buffer) + "\n").encode()
