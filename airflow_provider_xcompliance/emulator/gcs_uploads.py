"""The storage side's uploads, like X's Google Cloud Storage: simple PUTs and resumable sessions.

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

Errors are answered through ``gcs_errors``; the session records are the state's (``sessions``).
"""

from __future__ import annotations

import re
import urllib.parse

from .gcs_errors import _error, _expired, _invalid, _verified_job, no_such_key
from .httpio import BLOCK

__all__ = ["upload", "session_put", "CHUNK_ALIGN"]

CHUNK_ALIGN = 256 * 1024
LENGTH_DETAILS = "You must provide the Content-Length HTTP header."
_CONTENT_RANGE = re.compile(
    r"bytes (?:(?P<first>[0-9]+)-(?P<last>[0-9]+)|(?P<star>\*))"
    r"/(?P<total>[0-9]+|\*)",
    re.ASCII,
)


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
