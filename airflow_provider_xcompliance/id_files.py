"""ID files: their streaming validation and normalisation, and the read of an ID source for an upload.

An ID file is one tweet or user ID per line: a decimal integer that fits a signed 64-bit
integer (at most 9223372036854775807), written without leading zeros. Blank lines, surrounding
whitespace, CRLF line ends and a UTF-8 byte-order mark are tolerated and normalised away; any
other line (``0123``, ``9999999999999999999``, ``12a``) stops the stream with an
:class:`InvalidIdError` naming the source, the line number and what is wrong, so that nothing
after it is sent and the upload is never completed.

Clean blocks (the common case) are checked whole, with C-level byte operations and no Python
loop per line: ``translate`` deletes the digits, and what is left must be line feeds only, one
per line. When every line has the same width (tweet IDs are 19 digits today) strided slices
check that each line ends where it should and that none starts with ``0``; only 19-digit lines
starting with ``9`` are compared with the largest ID (every 19-digit ID below 9e18 fits). Files
of mixed widths are checked with ``find`` for leading zeros and blank lines, a digits-to-``d``
``translate`` for lines over 19 digits, and a regular expression for the 19-digit lines that
start with ``9``. Only a block that fails these checks is walked line by line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator, Iterable, Iterator
from typing import TYPE_CHECKING

from airflow.sdk import ObjectStoragePath

from airflow_provider_xcompliance.client.bodies import BodyLengthChanged
from airflow_provider_xcompliance.exceptions import IdSourceError, InvalidIdError
from airflow_provider_xcompliance.object_storage import BLOCK_SIZE, Location, read_blocks, to_path
from airflow_provider_xcompliance.utils.prefetch import read_ahead
from airflow_provider_xcompliance.utils.progress import Progress

if TYPE_CHECKING:
    from typing_extensions import TypeIs

BOM = b"\xef\xbb\xbf"
MAX_ID = 9223372036854775807  # the largest signed 64-bit integer
MAX_LINE = 4096  # no ID line is this long; a file without line feeds must not fill memory
_MAX_ID_BYTES = str(MAX_ID).encode()
_MAX_DIGITS = len(_MAX_ID_BYTES)
_DIGIT_BYTES = b"0123456789"
_DIGITS = re.compile(rb"[0-9]+")
_DIGITS_AS_D = bytes.maketrans(b"0123456789", b"dddddddddd")
_TOO_LONG = b"d" * (_MAX_DIGITS + 1)
# A line of 19 digits starting with 9, after a line feed; the look-ahead leaves its line feed
# to start the next match.
_NINETEEN_DIGITS_FROM_9 = re.compile(rb"\n(9[0-9]{%d})(?=\n)" % (_MAX_DIGITS - 1))


def canonical_id_count(lines: bytes) -> int | None:
    """The number of IDs in ``lines`` (whole lines, each ending in ``\\n``) when every line is
    already a canonical ID, else None (then :meth:`IdNormalizer._clean_slowly` says which line
    is wrong, or normalises it)."""
    if not lines:
        return 0
    line_feeds = lines.translate(None, _DIGIT_BYTES)
    count = len(line_feeds)
    # Comparing with a fresh run of line feeds is a memcmp; strip or count walk byte by byte.
    if line_feeds != b"\n" * count:  # a byte that is neither a digit nor a line feed
        return None
    width = lines.find(b"\n")
    step = width + 1
    # Every line is exactly `width` digits: a line feed ends each, and there is no other.
    if 0 < width <= _MAX_DIGITS and len(lines) == count * step and lines[width::step] == line_feeds:
        firsts = lines[::step]
        if b"0" in firsts:
            return None
        if width == _MAX_DIGITS and b"9" in firsts and _any_too_large(lines):
            return None
        return count
    if lines[:1] in (b"0", b"\n") or b"\n0" in lines or b"\n\n" in lines:  # leading zero, blank line
        return None
    if _TOO_LONG in lines.translate(_DIGITS_AS_D):
        return None
    if _any_too_large(lines):
        return None
    return count


def _any_too_large(lines: bytes) -> bool:
    """Whether a 19-digit line exceeds the largest ID (only lines starting with 9 can); ``lines``
    holds only digits and line feeds. The search runs in C: a Python loop over every line
    starting with 9 ran at 70 MB/s on user IDs of mixed widths."""
    first = lines[: _MAX_DIGITS + 1]
    if first[:1] == b"9" and first[-1:] == b"\n" and first[:-1].isdigit() and first[:-1] > _MAX_ID_BYTES:
        return True
    return any(match[1] > _MAX_ID_BYTES for match in _NINETEEN_DIGITS_FROM_9.finditer(lines))


def id_problem(value: bytes) -> str | None:
    """Why a stripped, non-blank line is not an ID, or None when it is one."""
    if not _DIGITS.fullmatch(value) or len(value) > _MAX_DIGITS:
        return "expected a decimal integer of 1 to 19 digits"
    if value[:1] == b"0":
        return "IDs are written without leading zeros"
    if len(value) == _MAX_DIGITS and value > _MAX_ID_BYTES:
        return f"larger than {MAX_ID}, the largest possible ID"
    return None


class IdNormalizer:
    """Turns blocks of raw bytes into blocks of canonical ``ID\\n`` lines, counting as it goes."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.ids = 0
        self.bytes_out = 0
        self.normalised = False  # whether any byte was changed or dropped (a BOM, CRLF, blanks)
        self.lines_read = 0
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
            self.normalised = len(block) < len(data)
        cut = block.rfind(b"\n") + 1
        if not cut:
            self._tail += block
            if len(self._tail) > MAX_LINE:
                raise InvalidIdError(self.source, self.lines_read + 1, self._tail[:40].replace(b"\r", b"\\r"))
            return b""
        if self._tail:  # one copy: the unfinished line of the last block, then this block's lines
            lines = b"".join((self._tail, memoryview(block)[:cut]))
        else:
            lines = block[:cut] if cut < len(block) else block
        self._tail = block[cut:]
        return self._clean(lines)

    def finish(self) -> bytes:
        """Clean what is left after the last block (a last line without a newline)."""
        tail, self._tail = self._tail, b""
        self._started = True
        self.normalised = self.normalised or bool(tail)  # a line feed added, or spaces dropped
        return self._clean(tail + b"\n") if tail.strip() else b""

    def _clean(self, lines: bytes) -> bytes:
        count = canonical_id_count(lines)
        if count is None:
            lines, count = self._clean_slowly(lines)
        else:
            self.lines_read += count
        self.ids += count
        self.bytes_out += len(lines)
        return lines

    def _clean_slowly(self, lines: bytes) -> tuple[bytes, int]:
        kept = []
        for line in lines.split(b"\n")[:-1]:
            self.lines_read += 1
            value = line.strip()
            if not value:
                continue
            problem = id_problem(value)
            if problem:
                raise InvalidIdError(self.source, self.lines_read, value, problem)
            kept.append(value)
        clean = b"\n".join(kept) + b"\n" if kept else b""
        self.normalised = self.normalised or clean != lines
        return clean, len(kept)


def normalized_blocks(
    blocks: Iterable[bytes], source: str, normalizer: IdNormalizer | None = None
) -> Iterator[bytes]:
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


IdSource = Location | Iterable[int | str]
HEAD_SIZE = 64 * 1024  # what is read of an ID file to tell whether it may already be canonical


def is_id_file(source: IdSource) -> TypeIs[Location]:
    """Whether ``source`` names an ID file (a path or a URL) rather than holding IDs in memory."""
    return isinstance(source, (str, os.PathLike, ObjectStoragePath))


def id_source_name(source: IdSource) -> str:
    """The source's name in errors and logs."""
    if is_id_file(source):
        return str(to_path(source))
    if isinstance(source, (bytes, bytearray)):
        raise TypeError("Pass IDs as a path, a URL or an iterable of IDs, not bytes")
    return "the given IDs"


class ValidatedIds:
    """The validated blocks of an ID source, read and checked in a thread of their own while the
    caller sends or spools. Each call reads a file source afresh (a retried ``PUT`` reads it
    again); ``normalizer`` counts the latest read. IDs given in memory can be read once."""

    def __init__(self, source: IdSource, name: str, progress: Progress) -> None:
        self.source = source
        self.name = name
        self.progress = progress
        self.normalizer = IdNormalizer(name)
        self._blocks: Generator[bytes, None, None] | None = None

    def __call__(self, unchanged: bool = False) -> Iterator[bytes]:
        """Start a read; with ``unchanged``, one that stops with :class:`BodyLengthChanged` at
        the first block that normalising changed (its length is then no longer the file's)."""
        self.close()
        if is_id_file(self.source):
            raw = source_blocks(to_path(self.source))
        else:
            raw = blocks_from_ids(self.source)
        self.normalizer = normalizer = IdNormalizer(self.name)
        blocks = _reporting(normalized_blocks(raw, self.name, normalizer), normalizer, self.progress)
        self._blocks = read_ahead(_unchanged(blocks, normalizer) if unchanged else blocks)
        return self._blocks

    def close(self) -> None:
        if self._blocks is not None:
            self._blocks.close()


def _unchanged(blocks: Iterator[bytes], normalizer: IdNormalizer) -> Iterator[bytes]:
    for block in blocks:
        if normalizer.normalised:
            raise BodyLengthChanged(f"normalising changed one of its first {normalizer.lines_read:,} lines")
        yield block


def canonical_length(source: IdSource) -> int | None:
    """The size of an ID file that looks canonical (its first lines are, and it ends with a line
    feed), so that its normalised length is known before it is read; else None."""
    if not is_id_file(source):
        return None
    try:
        with to_path(source).open("rb") as file:
            head = file.read(HEAD_SIZE)
            size = file.seek(0, os.SEEK_END)
            if size <= 0:
                return None
            file.seek(size - 1)
            last = file.read(1)
    except (OSError, ValueError):  # unreadable (the upload itself reports it), or not seekable
        return None
    lines = head[: head.rfind(b"\n") + 1]
    if last != b"\n" or not lines or canonical_id_count(lines) is None:
        return None  # a BOM, CRLF, spaces or a blank line early on: not worth a try
    return size


def source_blocks(path: ObjectStoragePath, size: int = BLOCK_SIZE) -> Iterator[bytes]:
    """The blocks of an ID file; a missing or unreadable file is an :class:`IdSourceError`."""
    try:
        yield from read_blocks(path, size)
    except FileNotFoundError:
        raise IdSourceError(f"The IDs file was not found: {path}") from None
    except IsADirectoryError:
        raise IdSourceError(f"The IDs file is a folder, not a file: {path}") from None
    except OSError as exc:
        raise IdSourceError(f"The IDs file cannot be read: {path} ({type(exc).__name__}: {exc})") from None


def _reporting(blocks: Iterator[bytes], normalizer: IdNormalizer, progress: Progress) -> Iterator[bytes]:
    for block in blocks:
        yield block
        progress.update(normalizer.bytes_out, normalizer.ids)
