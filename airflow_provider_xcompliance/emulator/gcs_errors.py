"""The storage side's errors: GCS XML answers, and the signed-URL check that gives most of them.

Errors are GCS XML documents ``<Error><Code>..</Code><Message>..</Message><Details>..</Details>
</Error>`` whose ``Details`` say what exactly was wrong. Signed URLs need no Authorization: each
request to one passes ``_verified_job`` (signature, expiry, then the job it names) before
``gcs_uploads`` or ``gcs_downloads`` answers it.
"""

from __future__ import annotations

import urllib.parse
from xml.sax.saxutils import escape

from .signing import SignatureExpired, SignatureMismatch, _normalize_header_value
from .timefmt import gcs_expiry

__all__ = ["no_such_key", "fault_status", "bad_framing", "xml_error"]

XML_HEAD = "<?xml version='1.0' encoding='UTF-8'?>"
SIGNATURE_MESSAGE = (
    "The request signature we calculated does not match the signature you "
    "provided. Check your Google secret key and signing method."
)
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
