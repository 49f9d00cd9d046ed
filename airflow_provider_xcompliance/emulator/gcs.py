"""The storage side: signed upload and download URLs, like X's Google Cloud Storage buckets.

* Simple upload: ``PUT <upload_url>`` with ``Content-Type: text/plain`` (signed) and a
  ``Content-Length``, streamed to a temporary file in 1 MiB blocks; only a complete body becomes
  the submission object. Without a Content-Length (``Transfer-Encoding: chunked``) GCS answers
  411 ``MissingContentLength`` -- unless the chunked body declares its decoded length in
  ``x-amz-decoded-content-length`` (then the body must have exactly that length). A second PUT
  replaces the object (200, GCS semantics): while the job is still ``created`` (see
  ``pickup_seconds``) the job takes the new object; once it has taken one, later objects change
  nothing for the job.
* Resumable upload (GCS XML API; the upload URL of a ``resumable`` job is signed for POST over
  ``content-length;content-type;host;x-goog-resumable``): ``POST <upload_url>`` with exactly
  ``Content-Length: 0``, ``Content-Type: text/plain`` and ``x-goog-resumable: start`` -> 201
  and a session URL in ``Location``. Only this start request must fall inside the upload
  window; the session then lives ``session_window_seconds`` (a week) unless
  ``sessions_outlive_upload_window=False``. ``PUT <session>`` chunks with ``Content-Range:
  bytes FIRST-LAST/TOTAL`` (``TOTAL`` may be ``*``; every chunk but the last a multiple of
  256 KiB) -> 308 with ``Range: bytes=0-N`` while incomplete, 200 once complete; ``PUT
  <session>`` with an empty body and ``Content-Range: bytes */TOTAL`` (or ``*/*``) asks how
  much is stored. A chunk is appended whole or not at all (a broken connection truncates it
  away again), except under the ``partial_chunk`` fault, which keeps fewer whole 256 KiB units.
* Download: ``GET <download_url>`` once the job is complete. The results object is stored
  gzip-compressed with ``Content-Encoding: gzip`` metadata (an empty result is an empty,
  uncompressed object), and served with GCS's decompressive transcoding: a request with
  ``Accept-Encoding: gzip`` gets the stored gzip bytes (``Content-Encoding: gzip``,
  ``Content-Length``, byte ranges of the compressed bytes honoured); any other request gets the
  decompressed bytes, chunked, with no ``Content-Length`` and no ``Content-Encoding``, and a
  ``Range`` header is ignored (200, whole object), as GCS does when it transcodes.
  ``gzip_results=False`` stores the results uncompressed (identity, Content-Length, ranges).

Errors are GCS XML documents ``<Error><Code>..</Code><Message>..</Message><Details>..</Details>
</Error>`` whose ``Details`` say what exactly was wrong. Signed URLs need no Authorization.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from xml.sax.saxutils import escape

from .httpio import BLOCK, accepts_gzip
from .signing import SignatureExpired, SignatureMismatch, _normalize_header_value
from .timefmt import gcs_expiry

__all__ = [
    "upload",
    "session_put",
    "download",
    "no_such_key",
    "fault_status",
    "bad_framing",
    "xml_error",
    "CHUNK_ALIGN",
]

CHUNK_ALIGN = 256 * 1024
XML_HEAD = "<?xml version='1.0' encoding='UTF-8'?>"
SIGNATURE_MESSAGE = (
    "The request signature we calculated does not match the signature you "
    "provided. Check your Google secret key and signing method."
)
LENGTH_DETAILS = "You must provide the Content-Length HTTP header."
_CONTENT_RANGE = re.compile(
    r"bytes (?:(?P<first>[0-9]+)-(?P<last>[0-9]+)|(?P<star>\*))"
    r"/(?P<total>[0-9]+|\*)",
    re.ASCII,
)
_RANGE = re.compile(r"bytes=(?P<first>[0-9]*)-(?P<last>[0-9]*)", re.ASCII)
_CODES = {
    400: "InvalidArgument",
    401: "AuthenticationRequired",
    403: "AccessDenied",
    404: "NoSuchKey",
    408: "RequestTimeout",
    409: "Conflict",
    410: "Gone",
    412: "PreconditionFailed",
    429: "TooManyRequests",
    500: "InternalError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}
_FAULT_DETAILS = {
    408: "The request timed out before the server received it whole (injected fault).",
    429: "The rate of requests to this object is too high; retry with exponential backoff (injected fault).",
    500: "Internal error on the storage server (injected fault).",
    502: "Bad gateway in front of the storage server (injected fault).",
    503: "The storage service is temporarily unavailable; retry with exponential backoff (injected fault).",
    504: "The storage server timed out (injected fault).",
}


def xml_error(code: str, message: str, details: str | None = None) -> bytes:
    text = f"{XML_HEAD}<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
    if details is not None:
        text += f"<Details>{escape(details)}</Details>"
    return (text + "</Error>").encode("utf-8")


def _error(ex, status: int, code: str, message: str, details: str, headers: dict | None = None) -> None:
    ex.respond(
        status,
        xml_error(code, message, details),
        content_type="application/xml; charset=UTF-8",
        headers=headers,
    )


def _invalid(ex, details: str) -> None:
    _error(ex, 400, "InvalidArgument", "Invalid argument.", details)


def _expired(ex, at: float) -> None:
    _error(
        ex,
        400,
        "ExpiredToken",
        "The provided token has expired.",
        f"Request signature expired at: {gcs_expiry(at)}",
    )


def _object_name(path: str) -> str:
    return urllib.parse.unquote(path.lstrip("/"))


def _mismatch_details(ex, fallback: str) -> str:
    """Say what differs between the request and the URL the emulator issued for its path."""
    st = ex.state
    parts = ex.path.split("/")
    job = st.jobs.get(parts[2]) if len(parts) > 3 else None
    if job is None or parts[3] not in ("submission", "delivery") or st.object_path(job, parts[3]) != ex.path:
        return (
            f"{fallback} No URL was signed for the path {_object_name(ex.path)!r}: the "
            "path was altered or belongs to another object."
        )
    method, _, headers, issued_query = st.signed_request(job, parts[3])
    issued = dict(urllib.parse.parse_qsl(issued_query, keep_blank_values=True))
    got = dict(urllib.parse.parse_qsl(ex.query, keep_blank_values=True))
    changed = sorted(k for k in issued.keys() & got.keys() if issued[k] != got[k])
    missing = sorted(issued.keys() - got.keys())
    extra = sorted(got.keys() - issued.keys())
    if changed or missing or extra:
        what = (
            [f"{k} was changed" for k in changed]
            + [f"{k} is missing" for k in missing]
            + [f"{k} was added" for k in extra]
        )
        return "The query string differs from the signed URL: " + "; ".join(what) + "."
    problems = []
    if ex.method != method:
        problems.append(f"the URL is signed for {method}, the request used {ex.method}")
    signed = dict(headers)
    signed["host"] = st.signer.host
    for name in sorted(signed):
        value = ex.header(name)
        if value is None:
            problems.append(f"the signed header {name} is missing (signed value {signed[name]!r})")
        elif _normalize_header_value(value) != signed[name]:
            problems.append(f"the signed header {name} was {value!r}, signed value {signed[name]!r}")
    if problems:
        text = "; ".join(problems)
        return text[0].upper() + text[1:] + "."
    return fallback


def _verified_job(ex):
    """Check the signature and find the job; None once an error has been answered."""
    st = ex.state
    try:
        st.signer.verify(ex.method, ex.path, ex.query, ex.header, ex.received_at)
    except SignatureMismatch as exc:
        _error(ex, 403, "SignatureDoesNotMatch", SIGNATURE_MESSAGE, _mismatch_details(ex, str(exc)))
        return None
    except SignatureExpired as exc:
        _expired(ex, exc.expired_at)
        return None
    job = st.find(ex.path.split("/")[2], ex.received_at)
    if job is None:
        no_such_key(ex)
    return job


def _declared_length(ex) -> int | None:
    """The body length a simple upload declares: Content-Length, or the
    ``x-amz-decoded-content-length`` of a chunked body; None when neither (411)."""
    if ex.body.length is not None:
        return ex.body.length
    decoded = ex.header("x-amz-decoded-content-length")
    if ex.body.chunked and decoded is not None and decoded.strip().isdigit():
        return int(decoded.strip())
    return None


def upload(ex) -> None:
    """``PUT <upload_url>`` (simple) or ``POST <upload_url>`` (resumable start)."""
    st = ex.state
    job = _verified_job(ex)
    if job is None:
        return
    now = ex.received_at
    with st.lock:
        expired = st.status(job, now) == "expired"
        if ex.method == "POST" and job.uploaded_at is None and now >= job.upload_deadline:
            expired = True  # a live session keeps the job open, not the start window
    if expired:
        _expired(ex, job.upload_deadline)
        return
    if ex.method == "POST":  # the signature has checked every header of the start request
        ex.body.discard()
        session = st.start_session(job, now)
        ex.respond(201, headers={"Location": st.session_url(job, session)})
        return
    declared = _declared_length(ex)
    if declared is None:
        _error(ex, 411, "MissingContentLength", "Length Required.", LENGTH_DETAILS)
        return
    part = st.new_part_path(job.id, "upload")
    try:
        with open(part, "wb") as f:
            while data := ex.body.read(BLOCK):
                f.write(data)
        if ex.body.received != declared:
            _invalid(
                ex, f"The body has {ex.body.received} bytes but x-amz-decoded-content-length says {declared}."
            )
            return
        refused = st.accept_upload(job, part, now)
    finally:
        part.unlink(missing_ok=True)
    if refused == "expired":
        _expired(ex, job.upload_deadline)
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
    if refused == "expired":
        _expired(ex, job.upload_deadline)
        return
    session.complete = True
    if _take_lost_answer(ex, session):
        ex.body.discard()
        ex.drop()  # stored completely; the answer is lost on the way
        return
    ex.respond(200)


def _take_session_fault(ex, session, kind: str, once_flag: str) -> bool:
    """Whether a queued ``kind`` fault, or the "all" profile (once per session), hits now."""
    if ex.state.faults.take("upload_session", (kind,)) is not None:
        return True
    if ex.state.faults.all_profile and not getattr(session, once_flag):
        setattr(session, once_flag, True)
        return True
    return False


def _take_lost_answer(ex, session) -> bool:
    return _take_session_fault(ex, session, "lose_final_answer", "final_lost")


def _take_partial(ex, session) -> bool:
    return _take_session_fault(ex, session, "partial_chunk", "partial_done")


def session_put(ex) -> None:
    """``PUT <session URL>``: a chunk, or a status query."""
    st = ex.state
    query = urllib.parse.parse_qs(ex.query, keep_blank_values=True)
    session = st.find_session(query.get("upload_id", [""])[0], ex.received_at)
    if session is None:
        _error(
            ex,
            404,
            "NoSuchUpload",
            "The requested upload was not found.",
            "No resumable upload session has this upload_id: it never existed, or it "
            "expired (sessions live a week from their start).",
        )
        return
    if ex.method != "PUT":
        _error(
            ex,
            405,
            "MethodNotAllowed",
            "The specified method is not allowed.",
            f"Upload session URLs accept PUT only, not {ex.method}.",
        )
        return
    job = st.find(session.job_id, ex.received_at)
    if job is None:
        no_such_key(ex)
        return
    if not session.lock.acquire(timeout=30):
        _error(
            ex,
            503,
            "ServiceUnavailable",
            "Service unavailable.",
            "Another request is still writing to this upload session.",
        )
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
        expired = st.status(job, ex.received_at) == "expired"
    if expired:
        _expired(ex, job.upload_deadline)
        return
    try:
        parsed = _parse_content_range(ex.header("Content-Range"))
    except ValueError:
        _invalid(
            ex,
            f"Invalid Content-Range header {ex.header('Content-Range')!r}: expected "
            "'bytes FIRST-LAST/TOTAL', 'bytes */TOTAL' or a '*' total.",
        )
        return
    if parsed is None:  # no Content-Range: the body is the whole object
        if not ex.body.framed:
            _error(ex, 411, "MissingContentLength", "Length Required.", LENGTH_DETAILS)
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
            _invalid(ex, "A status query (Content-Range: bytes */TOTAL) must have an empty body.")
            return
        if total is not None:
            if total < session.stored:
                _invalid(
                    ex, f"The total size {total} is smaller than the {session.stored} bytes already stored."
                )
                return
            if session.total is not None and total != session.total:
                _invalid(
                    ex,
                    f"The total size {total} differs from the total {session.total} "
                    "given earlier in this session.",
                )
                return
            if total == session.stored:
                session.total = total
                _finalize(ex, job, session)
                return
        _session_progress(ex, session)
        return
    _, first, last, total = parsed
    length = last - first + 1
    if not ex.body.framed:
        _error(ex, 411, "MissingContentLength", "Length Required.", LENGTH_DETAILS)
        return
    problem = None
    if ex.body.length is not None and ex.body.length != length:
        problem = (
            f"The Content-Length {ex.body.length} does not match the Content-Range "
            f"bytes {first}-{last} ({length} bytes)."
        )
    elif total is not None and last >= total:
        problem = f"The Content-Range ends at byte {last}, after the total size {total}."
    elif total is not None and session.total is not None and total != session.total:
        problem = f"The total size changed during the upload: {total}, earlier {session.total}."
    elif first > session.stored:
        problem = (
            f"The chunk starts at byte {first} but only {session.stored} bytes are "
            "stored; resume from the Range of a status query."
        )
    elif not (total is not None and last + 1 == total) and length % CHUNK_ALIGN:
        problem = (
            f"Every chunk but the last must be a multiple of {CHUNK_ALIGN} bytes; this one has {length}."
        )
    if problem:
        _invalid(ex, problem)
        return
    if not _write(ex, session, start=session.stored, skip=session.stored - first, expected=length):
        _invalid(ex, f"The body has {ex.body.received} bytes but the Content-Range says {length}.")
        return
    before = session.stored
    end = max(session.stored, last + 1)
    if total is not None:
        session.total = total
    final = session.total is not None and end >= session.total
    if not final and _take_partial(ex, session):
        kept = (end // CHUNK_ALIGN) * CHUNK_ALIGN
        if kept == end:
            kept -= CHUNK_ALIGN
        kept = max(before, kept)
        with open(session.path, "r+b") as f:
            f.truncate(kept)
        session.stored = kept
        _session_progress(ex, session)
        return
    session.stored = end
    if final:
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


def no_such_key(ex) -> None:
    _error(
        ex, 404, "NoSuchKey", "The specified key does not exist.", f"No such object: {_object_name(ex.path)}"
    )


def fault_status(ex, status: int) -> None:
    """The answer of an injected ``status`` fault on a storage endpoint."""
    _error(
        ex,
        status,
        _CODES.get(status, "Error"),
        "Injected fault.",
        _FAULT_DETAILS.get(status, f"Injected fault: HTTP {status}."),
    )


def internal_error(ex) -> None:
    _error(
        ex,
        500,
        "InternalError",
        "Internal error.",
        "The emulator failed while answering this request (see its log).",
    )


def bad_framing(ex) -> None:
    _invalid(
        ex,
        "The request body framing is malformed (bad chunked encoding, an unsupported "
        "Transfer-Encoding, or conflicting Content-Length headers).",
    )
