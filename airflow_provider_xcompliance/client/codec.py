"""The one encoding of the X API's requests and interpretation of its answers, shared by the sync
hook and the async trigger; and GCS's XML errors of the signed URLs.

Nothing here does I/O: the hook (``requests``) and the trigger (``httpx``) send the requests and
hand the answers to these functions, so status mapping, problem parsing and rate-limit headers
exist exactly once (retry decisions and pacing are in :mod:`.retry`, job reuse in :mod:`.matching`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypedDict
from xml.etree import ElementTree

from airflow_provider_xcompliance.client.jobs import JOB_TYPES, LISTABLE_STATUSES, ComplianceJob, RateLimit
from airflow_provider_xcompliance.exceptions import (
    XComplianceAPIError,
    XComplianceAuthError,
    XComplianceConflict,
    XComplianceInvalidRequest,
    XComplianceNotFound,
    XComplianceRateLimited,
    XComplianceServerError,
    XComplianceStorageError,
    XComplianceStorageUnavailable,
    XComplianceUsageCapped,
)

JOBS_PATH = "/2/compliance/jobs"
MAX_JOB_NAME = 64
JOB_ID = re.compile(r"[0-9]{1,19}")

_STATUS_ERRORS: dict[int, type[XComplianceAPIError]] = {
    400: XComplianceInvalidRequest,
    401: XComplianceAuthError,
    403: XComplianceAuthError,
    404: XComplianceNotFound,
    409: XComplianceConflict,
    429: XComplianceRateLimited,
}


# --- requests ------------------------------------------------------------------------------


def create_job_body(job_type: str, name: str | None = None, resumable: bool = False) -> dict[str, Any]:
    """The JSON body of ``POST /2/compliance/jobs``, checked before it is sent."""
    check_job_type(job_type)
    body: dict[str, Any] = {"type": job_type}
    if name:
        if len(name) > MAX_JOB_NAME:
            raise ValueError(f"Job name {name!r} is longer than the API's {MAX_JOB_NAME} characters")
        body["name"] = name
    if resumable:
        body["resumable"] = True
    return body


def list_jobs_params(job_type: str, status: str | None = None) -> dict[str, str]:
    check_job_type(job_type)
    params = {"type": job_type}
    if status:
        if status not in LISTABLE_STATUSES:
            raise ValueError(
                f"Cannot list jobs by status {status!r}: "
                f"the API filters only by {', '.join(LISTABLE_STATUSES)}"
            )
        params["status"] = status
    return params


def job_path(job_id: str) -> str:
    job_id = str(job_id).strip()
    if not JOB_ID.fullmatch(job_id):
        raise ValueError(f"{job_id!r} is not a compliance job id (1 to 19 digits)")
    return f"{JOBS_PATH}/{job_id}"


def check_job_type(job_type: str) -> None:
    if job_type not in JOB_TYPES:
        raise ValueError(f"Job type must be one of {', '.join(JOB_TYPES)}, not {job_type!r}")


# --- answers -------------------------------------------------------------------------------


def parse_rate_limit(headers: Mapping[str, str]) -> RateLimit:
    def number(name: str) -> int | None:
        try:
            return int(headers.get(name, ""))
        except ValueError:
            return None

    reset = number("x-rate-limit-reset")
    reset_at = None  # absent
    if reset is not None:
        try:
            reset_at = datetime.fromtimestamp(reset, tz=UTC)
        except (ValueError, OverflowError, OSError):  # absurd
            pass
    return RateLimit(
        limit=number("x-rate-limit-limit"), remaining=number("x-rate-limit-remaining"), reset_at=reset_at
    )


def read_api_answer(status: int, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """Return the JSON document of a successful answer, or raise the typed error it describes."""
    try:
        document = json.loads(body) if body else {}
    except ValueError:
        document = None
    if not isinstance(document, dict):
        document = None

    if 200 <= status < 300 and document is not None:
        if "data" not in document and document.get("errors") and "meta" not in document:
            raise _error_from_partial(status, document["errors"])
        return document

    problem = document or {}
    title = str(problem.get("title") or _reason(status))
    detail = str(problem.get("detail") or "")
    if document is None and body and not detail:
        detail = body[:200].decode("utf-8", "replace").strip()
    kwargs = _Problem(
        status=status,
        title=title,
        detail=detail,
        type=str(problem.get("type") or "about:blank"),
        errors=[e for e in problem.get("errors") or [] if isinstance(e, dict)]
        if isinstance(problem.get("errors"), list)
        else None,
    )
    if status == 429 and kwargs["type"].endswith("/usage-capped"):
        raise XComplianceUsageCapped(**kwargs)
    if status == 429:
        raise XComplianceRateLimited(**kwargs, reset_at=parse_rate_limit(headers).reset_at)
    if status >= 500 or 200 <= status < 300:  # a 2xx without JSON is a broken answer: retry it
        raise XComplianceServerError(**kwargs)
    error_class = _STATUS_ERRORS.get(status, XComplianceAPIError)
    if kwargs["type"].endswith("/conflict"):
        error_class = XComplianceConflict
    raise error_class(**kwargs)


class _Problem(TypedDict):
    """The arguments of an :class:`XComplianceAPIError` that a problem document gives."""

    status: int
    title: str
    detail: str
    type: str
    errors: list[dict[str, Any]] | None


def _error_from_partial(status: int, errors: list[dict[str, Any]]) -> XComplianceAPIError:
    """A 200 carrying only ``errors`` (how some v2 lookups say "not found")."""
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    kind = str(first.get("type", ""))
    error_class = XComplianceNotFound if kind.endswith("resource-not-found") else XComplianceAPIError
    return error_class(
        status=404 if error_class is XComplianceNotFound else status,
        title=str(first.get("title") or "Error"),
        detail=str(first.get("detail") or first.get("message") or ""),
        type=kind or "about:blank",
    )


def job_from_answer(document: dict[str, Any]) -> ComplianceJob:
    data = document.get("data")
    if not isinstance(data, dict) or not data.get("id"):
        raise XComplianceServerError(
            status=200, title="Malformed answer", detail="no job with an id in 'data'"
        )
    return ComplianceJob.from_api(data)


def jobs_from_answer(document: dict[str, Any]) -> list[ComplianceJob]:
    """``data`` is absent when there are no jobs, and ``meta`` was absent in 2021: accept both."""
    return [ComplianceJob.from_api(item) for item in document.get("data") or [] if isinstance(item, dict)]


STORAGE_RETRY_STATUSES = (408, 429)
"""Besides 5xx: the signed-URL answers GCS asks clients to retry with exponential backoff."""


def storage_error(status: int, body: bytes, what: str = "") -> XComplianceStorageError:
    """A refused signed-URL request as a typed error, from GCS's XML ``<Error>``: ``Code``,
    ``Message`` and ``Details``. 408, 429 and 5xx become :class:`XComplianceStorageUnavailable`
    (worth retrying); anything else is final."""
    code = details = ""
    message = body[:200].decode("utf-8", "replace").strip()
    try:
        root = ElementTree.fromstring(body)
        code = (root.findtext("Code") or "").strip()
        message = (root.findtext("Message") or "").strip()
        details = (root.findtext("Details") or "").strip()
    except ElementTree.ParseError:
        pass
    error_class = (
        XComplianceStorageUnavailable
        if status >= 500 or status in STORAGE_RETRY_STATUSES
        else XComplianceStorageError
    )
    return error_class(status, code, message or code or _reason(status), details, what)


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
