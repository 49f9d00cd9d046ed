"""Request bodies of known length, resumable chunks, and the inflation of gzip-encoded downloads."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import IO

import requests
from isal import isal_zlib
from urllib3.exceptions import HTTPError as Urllib3Error

from airflow_provider_xcompliance.exceptions import IdSourceChanged, XComplianceTransportError
from airflow_provider_xcompliance.object_storage import BLOCK_SIZE

DOWNLOAD_READ_SIZE = 512 * 1024  # compressed bytes per read from the socket (a few MiB inflated)
MAX_INFLATE = 16 * 1024 * 1024  # decompressed bytes per block, whatever the compression ratio


class SizedBody:
    """A re-readable file of known length: ``requests`` sends it with a ``Content-Length`` (not
    chunked, which GCS refuses) in large blocks, and a retry reads it again from the start."""

    def __init__(self, file: IO[bytes], length: int, block_size: int = BLOCK_SIZE) -> None:
        self.file = file
        self.length = length
        self.block_size = block_size

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        self.file.seek(0)
        while block := self.file.read(self.block_size):
            yield block


class BodyLengthChanged(Exception):
    """A :class:`StreamedBody` came out longer or shorter than the length it announced (or its
    producer found that it will, and stopped it early)."""


class StreamedBody:
    """A body of announced length whose blocks ``open_blocks`` produces afresh on each pass (a
    retry reads its source again), sent as they come instead of from a file.

    The block that completes the body is held back until the stream has ended at exactly
    ``length`` bytes. A stream that turns out longer or shorter (:class:`BodyLengthChanged`),
    or fails on the way (a bad line), stops the request before its last byte, so the storage
    server, which keeps an object only once its whole ``Content-Length`` has arrived, never
    gets one."""

    def __init__(self, open_blocks: Callable[[], Iterator[bytes]], length: int) -> None:
        self.open_blocks = open_blocks
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        blocks = self.open_blocks()
        try:
            held, total = b"", 0
            for block in blocks:
                total += len(block)
                if total > self.length:
                    raise BodyLengthChanged(f"more than the {self.length} bytes announced")
                if block:
                    if held:
                        yield held
                    held = block
            if total != self.length:
                raise BodyLengthChanged(f"{total} bytes, not the {self.length} announced")
            yield held
        finally:
            close = getattr(blocks, "close", None)
            if close:
                close()


class Chunk:
    """A chunk of a resumable upload as the blocks it is made of (nothing is copied), sent with
    its length from any offset within it (after a 308 that kept only part of it)."""

    def __init__(self, parts: list[memoryview], skip: int = 0) -> None:
        self.parts = parts
        self.skip = skip
        self.size = sum(map(len, parts)) - skip

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[memoryview]:
        skip = self.skip
        for part in self.parts:
            if skip >= len(part):
                skip -= len(part)
                continue
            yield part[skip:]
            skip = 0

    def after(self, skip: int) -> Chunk:
        return Chunk(self.parts, self.skip + skip)


def skipped_bytes(blocks: Iterable[bytes], count: int, what: str) -> Iterator[bytes]:
    """``blocks`` without their first ``count`` bytes (which a resumed session holds already)."""
    for block in blocks:
        if count >= len(block):
            count -= len(block)
            continue
        yield block[count:] if count else block
        count = 0
    if count:
        raise IdSourceChanged(
            f"{what}: the upload session of an earlier try holds more bytes than the IDs now have: "
            "the IDs file changed; upload it with a new job"
        )


def resumable_chunks(blocks: Iterable[bytes], size: int) -> Iterator[tuple[Chunk, bool]]:
    """Re-cut a stream into ``size``-byte chunks, flagging the last (short, or empty for an
    empty stream). A full chunk is let go only once a further byte exists, so the last chunk
    is known to be the last when it is sent. Memory: the blocks of one chunk."""
    parts: list[memoryview] = []
    filled = 0
    for block in blocks:
        view = memoryview(block)
        while filled + len(view) > size:
            taken = size - filled
            parts.append(view[:taken])
            view = view[taken:]
            yield Chunk(parts), False
            parts, filled = [], 0
        if view:
            parts.append(view)
            filled += len(view)
    yield Chunk(parts), True


def _gzip_inflater():
    """ISA-L's gzip inflater: zlib's interface, about 4x zlib's speed, the GIL released."""
    return isal_zlib.decompressobj(wbits=isal_zlib.MAX_WBITS | 16)


def decoded_blocks(response: requests.Response, what: str) -> Iterator[bytes]:
    """The body of a download, decompressed when it comes gzip-encoded (GCS serves gzip-stored
    objects as stored to clients that accept gzip); a truncated stream is a transport error."""
    gzipped = "gzip" in response.headers.get("Content-Encoding", "").lower()
    inflater = _gzip_inflater() if gzipped else None
    received = False
    held = b""  # the start of a further gzip member, sent on with the next read
    try:
        while True:
            data = response.raw.read(DOWNLOAD_READ_SIZE, decode_content=False)
            received = received or bool(data)
            if inflater is None:
                if not data:
                    break
                yield data
                continue
            data, held = held + data, b""  # (b"" + data is data itself: no copy)
            if not data:
                break
            while data:
                block = inflater.decompress(data, MAX_INFLATE)
                if block:
                    yield block
                data = inflater.unconsumed_tail
                if inflater.eof and inflater.unused_data:
                    # A further gzip member. Its header may be cut by the end of this read, and
                    # ISA-L refuses some headers in two pieces (with a header CRC or an extra
                    # field), so it goes on with the next read (an empty one at the end).
                    held, inflater = inflater.unused_data, _gzip_inflater()
                    break
        if inflater is not None and received and not inflater.eof:
            raise XComplianceTransportError(f"{what}: the compressed results ended early")
    except isal_zlib.error as exc:  # type: ignore[misc]  # isal's stubs declare it an instance, not a class
        raise XComplianceTransportError(f"{what}: the compressed results are damaged ({exc})") from None
    except (requests.RequestException, Urllib3Error, OSError) as exc:
        raise XComplianceTransportError(f"{what}: the connection broke off ({type(exc).__name__})") from None
