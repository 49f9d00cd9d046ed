"""The storage side: signed upload and download URLs, like X's Google Cloud Storage buckets.

* Simple upload: ``PUT <upload_url>`` (``Content-Type: text/plain``), streamed to a temporary
  file in 1 MiB blocks; only a complete body becomes the job's submission.
* Resumable upload (GCS XML API): ``POST <upload_url>`` with ``x-goog-resumable: start`` -> 201
  and a session URL in ``Location``; ``PUT <session>`` chunks with ``Content-Range: bytes
  FIRST-LAST/TOTAL`` (``TOTAL`` may be ``*``; every chunk but the last a multiple of 256 KiB)
  -> 308 with ``Range: bytes=0-N`` while incomplete, 200 once complete; ``PUT <session>`` with
  an empty body and ``Content-Range: bytes */TOTAL`` (or ``*/*``) asks how much is stored. A
  chunk is appended whole or not at all (a broken connection truncates it away again).
* Download: ``GET <download_url>`` streams the result file once the job is complete, with
  ``Content-Length``, or gzip ``Content-Encoding`` (chunked) when the client accepts it, and
  single byte ranges (206) for resuming.

Errors are GCS XML documents (``<Error><Code>...``). Signed URLs need no Authorization header.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
import zlib
from xml.sax.saxutils import escape

from .httpio import BLOCK, accepts_gzip
from .signing import SignatureExpired, SignatureMismatch
from .timefmt import gcs_expiry

__all__ = ["upload", "session_put", "download", "no_such_key", "fault_status", "bad_framing",
           "xml_error", "CHUNK_ALIGN"]

CHUNK_ALIGN = 256 * 1024
XML_HEAD = "<?xml version='1.0' encoding='UTF-8'?>"
SIGNATURE_MESSAGE = ("The request signature we calculated does not match the signature you "
                     "provided. Check your Google secret key and signing method.")
_CONTENT_RANGE = re.compile(r"bytes (?:(?P<first>[0-9]+)-(?P<last>[0-9]+)|(?P<star>\*))"
                            r"/(?P<total>[0-9]+|\*)", re.ASCII)
_RANGE = re.compile(r"bytes=(?P<first>[0-9]*)-(?P<last>[0-9]*)", re.ASCII)
_CODES = {400: "InvalidArgument", 401: "AuthenticationRequired", 403: "AccessDenied",
          404: "NoSuchKey", 408: "RequestTimeout", 409: "Conflict", 410: "Gone",
          412: "PreconditionFailed", 429: "TooManyRequests", 500: "InternalError",
          502: "BadGateway", 503: "ServiceUnavailable", 504: "GatewayTimeout"}


def xml_error(code: str, message: str, details: str | None = None) -> bytes:
    text = f"{XML_HEAD}<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
    if details is not None:
        text += f"<Details>{escape(details)}</Details>"
    return (text + "</Error>").encode("utf-8")


def _error(ex, status: int, code: str, message: str, details: str | None = None,
           headers: dict | None = None) -> None:
    ex.respond(status, xml_error(code, message, details), content_type="application/xml; charset=UTF-8",
               headers=headers)


def _expired(ex, at: float) -> None:
    _error(ex, 400, "ExpiredToken", "The provided token has expired.",
           f"Request signature expired at: {gcs_expiry(at)}")


def _verified_job(ex):
    """Check the signature and find the job; None once an error has been answered."""
    st = ex.state
    try:
        st.signer.verify(ex.method, ex.path, ex.query, ex.header, ex.received_at)
    except SignatureMismatch:
        _error(ex, 403, "SignatureDoesNotMatch", SIGNATURE_MESSAGE)
        return None
    except SignatureExpired as exc:
        _expired(ex, exc.expired_at)
        return None
    job = st.find(ex.path.split("/")[2], ex.received_at)
    if job is None:
        no_such_key(ex)
    return job


def _refuse_upload(ex, job, status: str) -> None:
    """Answer an upload request for a job that no longer accepts one."""
    if status == "expired":
        _expired(ex, job.upload_deadline)
    else:
        _error(ex, 409, "Conflict", f"The job no longer accepts uploads (status: {status}).")


def upload(ex) -> None:
    """``PUT <upload_url>`` (simple) or ``POST <upload_url>`` (resumable start)."""
    st = ex.state
    job = _verified_job(ex)
    if job is None:
        return
    now = ex.received_at
    with st.lock:
        status = st.status(job, now)
    if status != "created":
        _refuse_upload(ex, job, status)
        return
    if ex.method == "POST":
        if (ex.header("x-goog-resumable") or "").strip().lower() != "start":
            _error(ex, 400, "InvalidArgument", "A resumable upload must be started with "
                                               "the header x-goog-resumable: start.")
            return
        ex.body.discard()
        session = st.start_session(job, now)
        ex.respond(201, headers={"Location": st.session_url(job, session)})
        return
    if not ex.body.framed:
        _error(ex, 411, "MissingContentLength", "You must provide the Content-Length HTTP header.")
        return
    part = st.new_part_path(job.id, "upload")
    try:
        with open(part, "wb") as f:
            while data := ex.body.read(BLOCK):
                f.write(data)
        refused = st.accept_upload(job, part, now)
    finally:
        part.unlink(missing_ok=True)
    if refused is not None:
        _refuse_upload(ex, job, refused)
        return
    ex.respond(200)


def _parse_content_range(value: str | None):
    """None (no header), ('query', total) or ('chunk', first, last, total); total may be None.
    Raises ValueError when malformed."""
    if value is None:
        return None
    m = _CONTENT_RANGE.fullmatch(value.strip())
    if not m:
        raise ValueError(value)
    total = None if m["total"] == "*" else int(m["total"])
    if m["star"]:
        return ("query", total)
    first, last = int(m["first"]), int(m["last"])
    if last < first:
        raise ValueError(value)
    return ("chunk", first, last, total)


def _session_progress(ex, session) -> None:
    """308 Resume Incomplete with the stored range (no Range header when nothing is stored)."""
    headers = {"Range": f"bytes=0-{session.stored - 1}"} if session.stored else {}
    ex.respond(308, reason="Resume Incomplete", headers=headers)


def _finalize(ex, job, session) -> None:
    refused = ex.state.accept_upload(job, session.path, ex.received_at)
    if refused is not None:
        _refuse_upload(ex, job, refused)
        return
    session.complete = True
    ex.respond(200)


def session_put(ex) -> None:
    """``PUT <session URL>``: a chunk, or a status query."""
    st = ex.state
    query = urllib.parse.parse_qs(ex.query, keep_blank_values=True)
    session = st.find_session(query.get("upload_id", [""])[0], ex.received_at)
    if session is None:
        _error(ex, 404, "NoSuchUpload", "The requested upload was not found or has expired.")
        return
    if ex.method != "PUT":
        _error(ex, 405, "MethodNotAllowed", "Upload sessions accept PUT only.")
        return
    job = st.find(session.job_id, ex.received_at)
    if job is None:
        no_such_key(ex)
        return
    if not session.lock.acquire(timeout=30):
        _error(ex, 503, "ServiceUnavailable", "Another request is writing to this session.")
        return
    try:
        _session_put_locked(ex, job, session)
    finally:
        session.lock.release()


def _session_put_locked(ex, job, session) -> None:
    st = ex.state
    if session.complete:
        ex.respond(200)
        return
    with st.lock:
        status = st.status(job, ex.received_at)
        taken = job.uploaded_at is not None
    if taken or status != "created":
        _refuse_upload(ex, job, status)
        return
    try:
        parsed = _parse_content_range(ex.header("Content-Range"))
    except ValueError:
        _error(ex, 400, "InvalidArgument", "Invalid Content-Range header.")
        return
    if parsed is None:  # no Content-Range: the body is the whole object
        if not ex.body.framed:
            _error(ex, 411, "MissingContentLength", "You must provide the Content-Length HTTP header.")
            return
        session.stored = 0  # the whole-object form restarts the upload
        _write(ex, session, start=0, skip=0, expected=None)
        session.stored = ex.body.received
        session.total = session.stored
        _finalize(ex, job, session)
        return
    if parsed[0] == "query":
        total = parsed[1]
        if ex.body.read(1):
            _error(ex, 400, "InvalidArgument", "A status query must have an empty body.")
            return
        if total is not None:
            if total < session.stored or (session.total is not None and total != session.total):
                _error(ex, 400, "InvalidArgument", "The total size does not match the upload.")
                return
            if total == session.stored:
                session.total = total
                _finalize(ex, job, session)
                return
        _session_progress(ex, session)
        return
    _, first, last, total = parsed
    length = last - first + 1
    problem = None
    if not ex.body.framed:
        _error(ex, 411, "MissingContentLength", "You must provide the Content-Length HTTP header.")
        return
    if ex.body.length is not None and ex.body.length != length:
        problem = "The Content-Length does not match the Content-Range."
    elif total is not None and last >= total:
        problem = "The Content-Range ends after the total size."
    elif total is not None and session.total is not None and total != session.total:
        problem = "The total size changed during the upload."
    elif first > session.stored:
        problem = f"The chunk starts at byte {first} but only {session.stored} bytes are stored."
    elif not (total is not None and last + 1 == total) and length % CHUNK_ALIGN:
        problem = f"Every chunk but the last must be a multiple of {CHUNK_ALIGN} bytes."
    if problem:
        _error(ex, 400, "InvalidArgument", problem)
        return
    if not _write(ex, session, start=session.stored, skip=session.stored - first, expected=length):
        _error(ex, 400, "InvalidArgument", "The body length does not match the Content-Range.")
        return
    session.stored = max(session.stored, last + 1)
    if total is not None:
        session.total = total
    if session.total is not None and session.stored >= session.total:
        _finalize(ex, job, session)
        return
    _session_progress(ex, session)


def _write(ex, session, start: int, skip: int, expected: int | None) -> bool:
    """Append the body to the session file at ``start``, dropping its first ``skip`` bytes (the
    overlap with what is stored). All or nothing: on a broken connection or a body of the wrong
    length the file is cut back to ``start`` (the exception propagates / False is returned)."""
    with open(session.path, "r+b") as f:
        f.seek(start)
        f.truncate()
        try:
            ex.body.skip(skip)
            while data := ex.body.read(BLOCK):
                f.write(data)
            if expected is not None and ex.body.received != expected:
                f.truncate(start)
                return False
        except BaseException:
            f.truncate(start)
            raise
    return True


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


def download(ex) -> None:
    """``GET <download_url>``: the result file of a complete job."""
    st = ex.state
    job = _verified_job(ex)
    if job is None:
        return
    with st.lock:
        complete = st.status(job, ex.received_at) == "complete"
        outcome = job.outcome
    if not complete:
        no_such_key(ex)
        return
    size = outcome.size
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": f'"{outcome.md5.hex()}"',
        "x-goog-hash": "md5=" + base64.b64encode(outcome.md5).decode(),
        "x-goog-stored-content-length": str(size),
        "x-goog-stored-content-encoding": "identity",
    }
    limit = ex.truncate_after  # a drop fault cutting the body short
    byte_range = _byte_range(ex.header("Range"), size)
    if byte_range == "unsatisfiable":
        _error(ex, 416, "InvalidRange", "The requested range cannot be satisfied.",
               headers={"Content-Range": f"bytes */{size}"})
        return
    with open(st.results_path(job.id), "rb") as f:
        if byte_range is not None:
            first, last = byte_range
            f.seek(first)
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
            ex.begin(206, headers, content_type="application/octet-stream", length=last - first + 1)
            _copy(ex, f, last - first + 1, limit)
        elif (st.config.gzip and accepts_gzip(ex.header("Accept-Encoding"))
              and ex.request_version != "HTTP/1.0"):
            headers["Content-Encoding"] = "gzip"
            headers["Vary"] = "Accept-Encoding"
            writer = ex.begin(200, headers, content_type="application/octet-stream", length=None)
            compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
            sent = 0
            while True:
                data = f.read(BLOCK)
                out = compressor.compress(data) if data else compressor.flush()
                if limit is not None and sent + len(out) >= limit:
                    writer.write(out[:limit - sent])
                    ex.drop()
                    return
                writer.write(out)
                sent += len(out)
                if not data:
                    break
            writer.close()
        else:
            ex.begin(200, headers, content_type="application/octet-stream", length=size)
            _copy(ex, f, size, limit)


def _copy(ex, f, n: int, limit: int | None) -> None:
    sent = 0
    while sent < n:
        data = f.read(min(BLOCK, n - sent))
        if not data:
            raise ConnectionAbortedError("the result file is shorter than recorded")
        if limit is not None and sent + len(data) >= limit:
            ex.write(data[:limit - sent])
            ex.drop()
            return
        ex.write(data)
        sent += len(data)


def no_such_key(ex) -> None:
    _error(ex, 404, "NoSuchKey", "The specified key does not exist.")


def fault_status(ex, status: int) -> None:
    """The answer of an injected ``status`` fault on a storage endpoint."""
    _error(ex, status, _CODES.get(status, "Error"), "Injected fault.")


def bad_framing(ex) -> None:
    _error(ex, 400, "InvalidArgument", "Malformed request body.")
