"""HTTP/1.1 message bodies, read and written by hand.

``http.server`` parses request lines and headers but leaves bodies to the handler, and it knows
nothing of ``Transfer-Encoding: chunked``. Uploads can be gigabytes sent either way, so bodies
are streamed here in blocks (never held whole), chunked framing is decoded incrementally, and
a client that goes away mid-body is reported as :class:`IncompleteBody` so the caller can throw
the partial data away.
"""

from __future__ import annotations

import re
from io import BufferedIOBase

__all__ = ["BLOCK", "BodyError", "IncompleteBody", "BodyReader", "ChunkedWriter", "accepts_gzip"]

BLOCK = 1 << 20
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_MAX_TRAILERS = 100


class BodyError(Exception):
    """The body framing is malformed (answer 400 and close the connection)."""


class IncompleteBody(ConnectionError):
    """The connection ended (or timed out) before the whole body arrived."""


class BodyReader:
    """Reads one request body, by ``Content-Length`` or chunked ``Transfer-Encoding``."""

    def __init__(self, rfile: BufferedIOBase, headers) -> None:
        self._rfile = rfile
        self.chunked = False
        self.length: int | None = None  # declared Content-Length
        self.received = 0
        self._chunk_left = 0
        te = headers.get_all("Transfer-Encoding") or []
        cl = headers.get_all("Content-Length") or []
        if te:
            codings = [c.strip().lower() for v in te for c in v.split(",") if c.strip()]
            if codings != ["chunked"]:
                raise BodyError("unsupported Transfer-Encoding")
            self.chunked = True
        elif cl:
            values = {v.strip() for v in cl}
            if len(values) != 1:
                raise BodyError("conflicting Content-Length")
            value = values.pop()
            if not value.isascii() or not value.isdigit():
                raise BodyError("bad Content-Length")
            self.length = int(value)
        self.done = not self.chunked and not self.length

    @property
    def framed(self) -> bool:
        """True when the request declared a body (Content-Length or chunked)."""
        return self.chunked or self.length is not None

    @property
    def remaining(self) -> int | None:
        """Bytes still to come, when known."""
        if self.done:
            return 0
        if self.length is None:  # chunked
            return None
        return self.length - self.received

    def _read_exact(self, n: int) -> bytes:
        try:
            data = self._rfile.read(n)
        except (TimeoutError, OSError) as exc:
            raise IncompleteBody(str(exc)) from exc
        if len(data) < n:
            raise IncompleteBody("connection closed mid-body")
        return data

    def _readline(self) -> bytes:
        try:
            line = self._rfile.readline(4096)
        except (TimeoutError, OSError) as exc:
            raise IncompleteBody(str(exc)) from exc
        if not line:
            raise IncompleteBody("connection closed mid-body")
        if not line.endswith(b"\n"):
            raise BodyError("chunk framing line too long")
        return line

    def read(self, n: int = BLOCK) -> bytes:
        """Up to ``n`` bytes of the body; ``b""`` once it is all read."""
        if self.done:
            return b""
        if self.length is not None:  # not chunked
            data = self._read_exact(min(n, self.length - self.received))
            self.received += len(data)
            if self.received >= self.length:
                self.done = True
            return data
        if self._chunk_left == 0:
            size_field = self._readline().split(b";", 1)[0].strip()
            if not _HEX.fullmatch(size_field):
                raise BodyError("bad chunk size")
            size = int(size_field, 16)
            if size == 0:
                for _ in range(_MAX_TRAILERS):
                    if self._readline() in (b"\r\n", b"\n"):
                        self.done = True
                        return b""
                raise BodyError("too many trailers")
            self._chunk_left = size
        data = self._read_exact(min(n, self._chunk_left))
        self._chunk_left -= len(data)
        self.received += len(data)
        if self._chunk_left == 0 and self._readline() not in (b"\r\n", b"\n"):
            raise BodyError("chunk not followed by CRLF")
        return data

    def read_all(self, limit: int) -> bytes | None:
        """The whole body, or None when it is longer than ``limit`` (the rest is left unread)."""
        parts: list[bytes] = []
        total = 0
        while True:
            data = self.read(min(BLOCK, limit + 1 - total))
            if not data:
                return b"".join(parts)
            parts.append(data)
            total += len(data)
            if total > limit:
                return None

    def discard(self, limit: int | None = None) -> bool:
        """Read and drop the rest of the body; False when more than ``limit`` bytes remained
        (the connection must then be closed)."""
        remaining = self.remaining  # None: chunked
        if limit is not None and remaining is not None and remaining > limit:
            return False
        dropped = 0
        while True:
            data = self.read(BLOCK)
            if not data:
                return True
            dropped += len(data)
            if limit is not None and dropped > limit:
                return False

    def skip(self, n: int) -> int:
        """Read and drop up to ``n`` bytes; returns how many were dropped."""
        dropped = 0
        while dropped < n:
            data = self.read(min(BLOCK, n - dropped))
            if not data:
                break
            dropped += len(data)
        return dropped


class ChunkedWriter:
    """Writes a response body with chunked ``Transfer-Encoding``."""

    def __init__(self, wfile: BufferedIOBase) -> None:
        self._wfile = wfile

    def write(self, data: bytes) -> None:
        if data:
            self._wfile.write(b"%x\r\n%b\r\n" % (len(data), data))

    def close(self) -> None:
        self._wfile.write(b"0\r\n\r\n")


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header allows ``gzip`` (honouring ``q=0``)."""
    if not accept_encoding:
        return False
    star = None
    for item in accept_encoding.split(","):
        token, _, params = item.strip().partition(";")
        token = token.strip().lower()
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if token in ("gzip", "x-gzip"):
            return q > 0
        if token == "*":
            star = q > 0
    return bool(star)
