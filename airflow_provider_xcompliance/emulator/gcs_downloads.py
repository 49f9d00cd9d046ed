"""The storage side's downloads: a complete job's results object, served as GCS serves it.

``GET <download_url>`` once the job is complete. The results object is stored
gzip-compressed with ``Content-Encoding: gzip`` metadata (an empty result is an empty,
uncompressed object), and served with GCS's decompressive transcoding: a request with
``Accept-Encoding: gzip`` gets the stored gzip bytes (``Content-Encoding: gzip``,
``Content-Length``, byte ranges of the compressed bytes honoured); any other request gets the
decompressed bytes, chunked, with no ``Content-Length`` and no ``Content-Encoding``, and a
``Range`` header is ignored (200, whole object), as GCS does when it transcodes.
``gzip_results=False`` stores the results uncompressed (identity, Content-Length, ranges).
"""

from __future__ import annotations

import base64
import re

from .gcs_errors import _error, _verified_job, no_such_key
from .httpio import BLOCK, accepts_gzip

__all__ = ["download"]

_RANGE = re.compile(r"bytes=(?P<first>[0-9]*)-(?P<last>[0-9]*)", re.ASCII)


def _byte_range(value: str | None, size: int):
    """(first, last) for a single satisfiable range, 'unsatisfiable', or None (serve it all)."""
    if not value:
        return None
    m = _RANGE.fullmatch(value.strip())
    if not m or (not m["first"] and not m["last"]):
        return None
    if not m["first"]:  # suffix: the last N bytes
        n = int(m["last"])
        if n == 0 or size == 0:
            return "unsatisfiable"
        return (max(0, size - n), size - 1)
    first = int(m["first"])
    if m["last"] and int(m["last"]) < first:
        return None  # invalid: ignored, the whole file is sent
    if first >= size:
        return "unsatisfiable"
    last = int(m["last"]) if m["last"] else size - 1
    return (first, min(last, size - 1))


def _take_no_such_key(ex, job) -> bool:
    st = ex.state
    if st.faults.take("download", ("no_such_key",)) is not None:
        return True
    with st.lock:
        if job.no_such_key_left > 0:
            job.no_such_key_left -= 1
            return True
    return False


def download(ex) -> None:
    """``GET <download_url>``: the results object of a complete job."""
    st = ex.state
    job = _verified_job(ex)
    if job is None:
        return
    with st.lock:
        complete = st.status(job, ex.received_at) == "complete"
        stored = job.stored
    if not complete or stored is None or _take_no_such_key(ex, job):
        no_such_key(ex)
        return
    size = stored.size
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": f'"{stored.md5.hex()}"',
        "x-goog-hash": "md5=" + base64.b64encode(stored.md5).decode(),
        "x-goog-stored-content-length": str(size),
        "x-goog-stored-content-encoding": "gzip" if stored.gzipped else "identity",
    }
    limit = ex.truncate_after  # a drop fault cutting the body short
    if stored.gzipped and not accepts_gzip(ex.header("Accept-Encoding")):
        # decompressive transcoding: the Range header is ignored, no Content-Length
        headers["Warning"] = "214 UploadServer gunzipped"
        del headers["Accept-Ranges"]
        plain = st.results_path(job.id)
        with open(plain, "rb") as f:
            if ex.request_version == "HTTP/1.0":
                n = plain.stat().st_size
                ex.begin(200, headers, content_type="application/octet-stream", length=n)
                _copy(ex.write, ex, f, n, limit)
                return
            writer = ex.begin(200, headers, content_type="application/octet-stream", length=None)
            if _copy(writer.write, ex, f, None, limit):
                writer.close()
        return
    if stored.gzipped:
        headers["Content-Encoding"] = "gzip"
    byte_range = _byte_range(ex.header("Range"), size)
    if byte_range == "unsatisfiable":
        _error(
            ex,
            416,
            "InvalidRange",
            "The requested range cannot be satisfied.",
            f"The range {ex.header('Range')!r} is outside the object of {size} bytes.",
            headers={"Content-Range": f"bytes */{size}"},
        )
        return
    with open(stored.path, "rb") as f:
        if byte_range is not None:
            first, last = byte_range
            f.seek(first)
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
            ex.begin(206, headers, content_type="application/octet-stream", length=last - first + 1)
            _copy(ex.write, ex, f, last - first + 1, limit)
        else:
            ex.begin(200, headers, content_type="application/octet-stream", length=size)
            _copy(ex.write, ex, f, size, limit)


def _copy(write, ex, f, n: int | None, limit: int | None) -> bool:
    """Send ``n`` bytes of ``f`` (all of it when None); False when a drop fault cut it short."""
    sent = 0
    while n is None or sent < n:
        data = f.read(BLOCK if n is None else min(BLOCK, n - sent))
        if not data:
            if n is None:
                return True
            raise ConnectionAbortedError("the result file is shorter than recorded")
        if limit is not None and sent + len(data) >= limit:
            write(data[: limit - sent])
            ex.drop()
            return False
        write(data)
        sent += len(data)
    return True
