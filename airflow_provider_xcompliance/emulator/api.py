"""The three API endpoints (``/2/compliance/jobs``): validation, answers and problem bodies.

Shapes follow X API v2: a job under ``data``, lists with ``meta.result_count`` (and no ``data``
key when empty), problem JSON for errors (``invalid-request`` with an ``errors`` array,
``resource-not-found``, ``conflict``, ``usage-capped``, and ``about:blank`` for 401/429). Every
answer carries ``api-version`` and the three ``x-rate-limit-*`` headers of its endpoint. Order of
checks: bearer token (401), usage cap (429 ``usage-capped``, when ``usage_capped``), rate limit
(429), request validation (400), then the operation.

All three endpoints accept the ``compliance_job.fields`` query parameter (a comma-separated
subset of ``COMPLIANCE_JOB_FIELDS``; the answer shows every field either way, inferred) and
refuse any other query parameter besides ``type`` and ``status`` on the list. An unknown
(well-formed) job id answers 200 with an ``errors`` array (a ``resource-not-found`` problem) and
no ``data``, as X's OpenAPI spec describes; ``unknown_job_status=404`` answers 404 instead.
"""

from __future__ import annotations

import hmac
import json
import re
import urllib.parse
from http import HTTPStatus

from .faults import USAGE_CAPPED_BODY
from .rules import JOB_TYPES
from .state import API_ENDPOINTS

__all__ = [
    "create_job",
    "list_jobs",
    "get_job",
    "not_found",
    "method_not_allowed",
    "fault_status",
    "usage_capped",
    "bad_framing",
    "internal_error",
    "rate_headers",
    "COMPLIANCE_JOB_FIELDS",
]

PROBLEMS = "https://api.x.com/2/problems/"
UNAUTHORIZED = {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"}
TOO_MANY_REQUESTS = {
    "title": "Too Many Requests",
    "detail": "Too Many Requests",
    "type": "about:blank",
    "status": 429,
}
CONFLICT = {
    "type": PROBLEMS + "conflict",
    "title": "Conflict",
    "detail": "You cannot create a new job if one is already in progress",
    "status": 409,
}
JOB_STATUSES = ("created", "in_progress", "failed", "complete")
CREATE_KEYS = ("type", "name", "resumable")
FIELDS_PARAM = "compliance_job.fields"
COMPLIANCE_JOB_FIELDS = (
    "created_at",
    "download_expires_at",
    "download_url",
    "id",
    "name",
    "resumable",
    "status",
    "type",
    "upload_expires_at",
    "upload_url",
)
LIST_KEYS = ("type", "status", FIELDS_PARAM)
LOOKUP_KEYS = (FIELDS_PARAM,)
MAX_NAME = 64
MAX_BODY = 64 * 1024
_JOB_ID = re.compile(r"[0-9]{1,19}", re.ASCII)


def _generic(status: int) -> dict:
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    return {"title": phrase, "detail": phrase, "type": "about:blank", "status": status}


def _invalid(errors: list[dict]) -> dict:
    return {
        "errors": errors,
        "title": "Invalid Request",
        "detail": "One or more parameters to your request was invalid.",
        "type": PROBLEMS + "invalid-request",
        "status": 400,
    }


def _param(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _prelude(ex, endpoint: str) -> dict | None:
    """Authenticate and count the request; the rate-limit headers, or None once answered."""
    st = ex.state
    now = ex.received_at
    scheme, _, credentials = (ex.header("Authorization") or "").strip().partition(" ")
    token_ok = scheme.lower() == "bearer" and hmac.compare_digest(
        credentials.strip().encode("utf-8", "replace"), st.config.token.encode("utf-8")
    )
    capped = token_ok and st.usage_capped
    with st.lock:
        if token_ok and not capped:
            allowed, headers = st.rate.take(endpoint, now)
        else:
            headers = st.rate.peek(endpoint, now)
    if not token_ok:
        ex.json(401, UNAUTHORIZED, headers)
        return None
    if capped:  # not counted against the rate limit
        ex.json(429, USAGE_CAPPED_BODY, headers)
        return None
    if not allowed:
        ex.json(429, TOO_MANY_REQUESTS, headers)
        return None
    return headers


def _query_values(ex) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for key, value in urllib.parse.parse_qsl(ex.query, keep_blank_values=True):
        values.setdefault(key, []).append(value)
    return values


def _query_errors(values: dict[str, list[str]], allowed: tuple[str, ...]) -> list[dict]:
    """Errors for unknown, repeated and (for ``compliance_job.fields``) invalid parameters."""
    errors = []
    for key, vals in values.items():
        if key not in allowed:
            errors.append(
                {
                    "parameters": {key: vals},
                    "message": f"The query parameter [{key}] is not one of [{','.join(allowed)}]",
                }
            )
        elif len(vals) > 1:
            errors.append(
                {"parameters": {key: vals}, "message": f"The `{key}` query parameter can only be given once"}
            )
        elif key == FIELDS_PARAM:
            for field in vals[0].split(","):
                if field not in COMPLIANCE_JOB_FIELDS:
                    errors.append(
                        {
                            "parameters": {key: vals},
                            "message": f"The `{key}` query parameter value [{field}] "
                            f"is not one of [{','.join(COMPLIANCE_JOB_FIELDS)}]",
                        }
                    )
    return errors


def create_job(ex) -> None:
    """``POST /2/compliance/jobs``."""
    headers = _prelude(ex, "create_job")
    if headers is None:
        return
    query_errors = _query_errors(_query_values(ex), LOOKUP_KEYS)
    raw = ex.body.read_all(MAX_BODY)
    if raw is None:
        ex.json(400, _invalid([{"parameters": {}, "message": "The request body is too large"}]), headers)
        return
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        ex.json(400, _invalid([{"parameters": {}, "message": "The request body is not valid JSON"}]), headers)
        return
    if not isinstance(body, dict):
        ex.json(
            400, _invalid([{"parameters": {}, "message": "The request body must be a JSON object"}]), headers
        )
        return
    errors = list(query_errors)
    for key, value in body.items():
        if key not in CREATE_KEYS:
            errors.append(
                {
                    "parameters": {key: [_param(value)]},
                    "message": f"[{key}] is not one of [{','.join(CREATE_KEYS)}]",
                }
            )
    job_type = body.get("type")
    if "type" not in body:
        errors.append({"parameters": {"type": []}, "message": "The `type` field is required"})
    elif job_type not in JOB_TYPES:
        errors.append(
            {
                "parameters": {"type": [_param(job_type)]},
                "message": f"The `type` field value [{_param(job_type)}] is not one of "
                f"[{','.join(JOB_TYPES)}]",
            }
        )
    name = body.get("name")
    if name is not None and not isinstance(name, str):
        errors.append(
            {"parameters": {"name": [_param(name)]}, "message": "The `name` field must be a string"}
        )
    elif isinstance(name, str) and len(name) > MAX_NAME:
        errors.append(
            {
                "parameters": {"name": [name]},
                "message": f"The `name` field must be at most {MAX_NAME} characters",
            }
        )
    resumable = body.get("resumable", False)
    if not isinstance(resumable, bool):
        errors.append(
            {
                "parameters": {"resumable": [_param(resumable)]},
                "message": "The `resumable` field must be a boolean",
            }
        )
    if errors:
        ex.json(400, _invalid(errors), headers)
        return
    job = ex.state.create_job(job_type, name, resumable, ex.received_at)
    if job is None:
        ex.json(409, CONFLICT, headers)
        return
    ex.json(200, {"data": ex.state.view(job, ex.received_at)}, headers)


def list_jobs(ex) -> None:
    """``GET /2/compliance/jobs?type=...[&status=...]``."""
    headers = _prelude(ex, "list_jobs")
    if headers is None:
        return
    values = _query_values(ex)
    errors = _query_errors(values, LIST_KEYS)
    job_type = values.get("type", [""])[-1]
    if not job_type:
        errors.append(
            {"parameters": {"type": [job_type]}, "message": "The `type` query parameter can not be empty"}
        )
    elif job_type not in JOB_TYPES:
        errors.append(
            {
                "parameters": {"type": [job_type]},
                "message": f"The `type` query parameter value [{job_type}] is not one of "
                f"[{','.join(JOB_TYPES)}]",
            }
        )
    status = values["status"][-1] if "status" in values else None
    if status is not None and status not in JOB_STATUSES:
        errors.append(
            {
                "parameters": {"status": [status]},
                "message": f"The `status` query parameter value [{status}] is not one of "
                f"[{','.join(JOB_STATUSES)}]",
            }
        )
    if errors:
        ex.json(400, _invalid(errors), headers)
        return
    now = ex.received_at
    jobs = [ex.state.view(job, now) for job in ex.state.list_jobs(job_type, status, now)]
    body = {"data": jobs, "meta": {"result_count": len(jobs)}} if jobs else {"meta": {"result_count": 0}}
    ex.json(200, body, headers)


def get_job(ex) -> None:
    """``GET /2/compliance/jobs/:id``."""
    headers = _prelude(ex, "get_job")
    if headers is None:
        return
    job_id = urllib.parse.unquote(ex.path.rsplit("/", 1)[1])
    errors = []
    if not _JOB_ID.fullmatch(job_id):
        errors.append(
            {
                "parameters": {"id": [job_id]},
                "message": f"The `id` query parameter value [{job_id}] does not match ^[0-9]{{1,19}}$",
            }
        )
    errors += _query_errors(_query_values(ex), LOOKUP_KEYS)
    if errors:
        ex.json(400, _invalid(errors), headers)
        return
    job = ex.state.find(job_id, ex.received_at)
    if job is None:
        problem = {
            "value": job_id,
            "detail": f"Could not find compliance job with id: [{job_id}].",
            "title": "Not Found Error",
            "resource_type": "compliance_job",
            "parameter": "id",
            "resource_id": job_id,
            "type": PROBLEMS + "resource-not-found",
        }
        if ex.state.config.unknown_job_status == 404:
            ex.json(404, {**problem, "status": 404, "errors": [problem]}, headers)
        else:
            ex.json(200, {"errors": [problem]}, headers)
        return
    ex.json(200, {"data": ex.state.view(job, ex.received_at)}, headers)


def not_found(ex) -> None:
    """Any other path under ``/2/``."""
    ex.json(404, {"errors": [{"message": "Sorry, that page does not exist", "code": 34}]})


def method_not_allowed(ex) -> None:
    ex.json(405, _generic(405))


def fault_status(ex, endpoint: str, status: int, reset_seconds: float) -> None:
    """The answer of an injected ``status`` fault on an API endpoint."""
    st = ex.state
    now = ex.received_at
    with st.lock:
        if status == 429:
            headers = st.rate.exhausted(endpoint, now + reset_seconds)
        else:
            headers = st.rate.peek(endpoint, now)
    ex.json(status, TOO_MANY_REQUESTS if status == 429 else _generic(status), headers)


def usage_capped(ex, endpoint: str) -> None:
    """The answer of an injected ``usage_cap`` fault: X's usage-capped 429."""
    st = ex.state
    with st.lock:
        headers = st.rate.peek(endpoint, ex.received_at)
    ex.json(429, USAGE_CAPPED_BODY, headers)


def rate_headers(ex) -> dict:
    """The rate-limit headers of the request's endpoint, without counting it."""
    if ex.endpoint not in API_ENDPOINTS:
        return {}
    with ex.state.lock:
        return ex.state.rate.peek(ex.endpoint, ex.received_at)


def bad_framing(ex) -> None:
    """A request whose body framing could not be parsed."""
    ex.json(400, _invalid([{"parameters": {}, "message": "Malformed request body"}]), rate_headers(ex))


def internal_error(ex) -> None:
    ex.json(500, _generic(500), rate_headers(ex))
