"""The shared interpretation of API answers, retry decisions and poll pacing."""

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from airflow_provider_xcompliance import exceptions as exc
from airflow_provider_xcompliance.client.codec import (
    create_job_body,
    job_from_answer,
    job_path,
    jobs_from_answer,
    list_jobs_params,
    parse_rate_limit,
    read_api_answer,
    storage_error,
)
from airflow_provider_xcompliance.client.jobs import ComplianceJob, RateLimit
from airflow_provider_xcompliance.client.matching import own_job
from airflow_provider_xcompliance.client.retry import RetryPolicy, next_poll_delay, poll_again_after
from airflow_provider_xcompliance.connection import ConnectionSettings

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def answer(status, body, headers=None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return read_api_answer(status, headers or {}, raw)


def test_job_fields_and_tolerance():
    job = job_from_answer(
        answer(
            200,
            {
                "data": {
                    "id": "1446017776678801409",
                    "type": "tweets",
                    "resumable": False,
                    "status": "created",
                    "created_at": "2021-10-07T07:41:18.000Z",
                    "upload_url": "https://u?X-Goog-Signature=abc",
                    "upload_expires_at": "2021-10-07T07:56:18.000Z",
                    "estimated_completion": "2021-10-07T08:00:00+00:00",
                    "download_url": "https://d",
                    "download_expires_at": "2021-10-14T07:41:18.000Z",
                    "future_field": 1,
                }
            },
        )
    )
    assert job.id == "1446017776678801409" and job.name is None and job.status == "created"
    assert job.upload_expires_at - job.created_at == timedelta(minutes=15)
    assert job.created_at.tzinfo is not None and job.estimated_completion.hour == 8
    assert "X-Goog-Signature" not in repr(job) and "upload_url" not in job.metadata()
    json.dumps(job.metadata())
    sparse = ComplianceJob.from_api({"id": "5", "created_at": "not a date"})
    assert sparse.created_at is None and sparse.resumable is False and sparse.status is None


def test_empty_job_lists_in_every_known_shape():
    assert jobs_from_answer(answer(200, {"meta": {"result_count": 0}})) == []
    assert jobs_from_answer(answer(200, {"data": []})) == []
    jobs = jobs_from_answer(answer(200, {"data": [{"id": "1"}, {"id": "2"}]}))
    assert [job.id for job in jobs] == ["1", "2"]


@pytest.mark.parametrize(
    "status, body, error",
    [
        (
            400,
            {
                "title": "Invalid Request",
                "detail": "One or more parameters to your request was invalid.",
                "type": "https://api.x.com/2/problems/invalid-request",
                "errors": [{"message": "bad type", "parameters": {"type": ["x"]}}],
            },
            exc.XComplianceInvalidRequest,
        ),
        (
            401,
            {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"},
            exc.XComplianceAuthError,
        ),
        (
            403,
            {"title": "Forbidden", "type": "https://api.x.com/2/problems/client-forbidden"},
            exc.XComplianceAuthError,
        ),
        (
            404,
            {"title": "Not Found Error", "type": "https://api.x.com/2/problems/resource-not-found"},
            exc.XComplianceNotFound,
        ),
        (
            409,
            {
                "title": "Conflict",
                "detail": "You cannot create a new job if one is already in progress",
                "type": "https://api.x.com/2/problems/conflict",
            },
            exc.XComplianceConflict,
        ),
        (
            400,
            {"title": "Conflict", "type": "https://api.twitter.com/2/problems/conflict"},
            exc.XComplianceConflict,
        ),
        (
            429,
            {
                "title": "Too Many Requests",
                "detail": "Too Many Requests",
                "type": "about:blank",
                "status": 429,
            },
            exc.XComplianceRateLimited,
        ),
        (503, b"<html>Service Unavailable</html>", exc.XComplianceServerError),
        (200, b"not json", exc.XComplianceServerError),
        (
            200,
            {
                "errors": [
                    {
                        "title": "Not Found Error",
                        "type": "https://api.x.com/2/problems/resource-not-found",
                        "detail": "Could not find job",
                    }
                ]
            },
            exc.XComplianceNotFound,
        ),
    ],
)
def test_problems_become_typed_errors(status, body, error):
    with pytest.raises(error) as caught:
        answer(status, body, {"x-rate-limit-reset": "1767268800"})
    assert caught.value.status in (status, 404)
    if isinstance(body, dict) and "title" in body:
        assert body["title"] in str(caught.value) and caught.value.type == body["type"]
    if isinstance(body, dict) and body.get("errors") and status == 400:
        assert "bad type" in str(caught.value)
    if status == 429:
        assert caught.value.reset_at == datetime.fromtimestamp(1767268800, UTC)


def test_retry_policy():
    policy = RetryPolicy(max_retries=3, backoff=1.0, max_rate_limit_wait=300)
    server, transport = exc.XComplianceServerError(503), exc.XComplianceTransportError("dropped")
    assert 0.5 <= policy.delay(1, server) <= 1.0
    assert 2.0 <= policy.delay(3, transport) <= 4.0
    assert policy.delay(4, server) is None
    assert policy.delay(1, exc.XComplianceInvalidRequest(400)) is None
    assert policy.delay(1, exc.XComplianceAuthError(401)) is None
    soon = exc.XComplianceRateLimited(429, reset_at=NOW + timedelta(seconds=120))
    assert policy.delay(2, soon, now=NOW) == pytest.approx(121)
    assert policy.delay(4, soon, now=NOW) is None  # 429s count against max_retries too: no endless loop
    late = exc.XComplianceRateLimited(429, reset_at=NOW + timedelta(seconds=1000))
    assert policy.delay(1, late, now=NOW) is None


def test_poll_pacing():
    job = ComplianceJob(id="1", status="in_progress")
    assert next_poll_delay(job, 30, now=NOW) == 30
    eta = ComplianceJob(id="1", status="in_progress", estimated_completion=NOW + timedelta(minutes=20))
    assert next_poll_delay(eta, 30, now=NOW) == 1201
    soon = ComplianceJob(id="1", status="in_progress", estimated_completion=NOW + timedelta(seconds=5))
    assert next_poll_delay(soon, 30, now=NOW) == 6
    late = ComplianceJob(id="1", status="in_progress", estimated_completion=NOW - timedelta(seconds=5))
    assert next_poll_delay(late, 30, now=NOW) == 30
    waiting = ComplianceJob(id="1", status="created", upload_expires_at=NOW + timedelta(seconds=9))
    assert next_poll_delay(waiting, 30, now=NOW) == 10
    budget = RateLimit(limit=150, remaining=10, reset_at=NOW + timedelta(seconds=600))
    assert next_poll_delay(job, 30, budget, now=NOW) == 60
    assert next_poll_delay(soon, 30, budget, now=NOW) == 60
    spent = RateLimit(limit=150, remaining=0, reset_at=NOW + timedelta(seconds=600))
    assert next_poll_delay(job, 30, spent, now=NOW) == 601


def test_requests_are_checked_before_sending():
    assert create_job_body("tweets") == {"type": "tweets"}
    assert create_job_body("users", "n", True) == {"type": "users", "name": "n", "resumable": True}
    with pytest.raises(ValueError, match="64"):
        create_job_body("tweets", "x" * 65)
    with pytest.raises(ValueError, match="tweets, users"):
        create_job_body("likes")
    with pytest.raises(ValueError, match="expired"):
        list_jobs_params("tweets", "expired")
    with pytest.raises(ValueError, match="job id"):
        job_path("12a")


def test_absurd_answers_still_give_clear_errors():
    with pytest.raises(exc.XComplianceInvalidRequest, match="HTTP 400 Bad"):
        answer(400, {"title": "Bad", "status": "four hundred", "errors": ["not a dict", {"message": "m"}]})
    assert parse_rate_limit({"x-rate-limit-reset": "99999999999999999"}).reset_at is None
    with pytest.raises(exc.XComplianceServerError, match="no job with an id"):
        job_from_answer(answer(200, {"data": {"status": "created"}}))


def test_connection_settings():
    conn = SimpleNamespace(conn_id="c", host="", schema=None, port=None, password=" tok ", extra_dejson={})
    settings = ConnectionSettings.from_connection(conn)
    assert settings.base_url == "https://api.x.com" and settings.token == "tok" and settings.timeout == 30
    conn = SimpleNamespace(
        conn_id="c",
        host="127.0.0.1",
        schema="http",
        port=8123,
        password="t",
        extra_dejson={"timeout": 5, "max_retries": 2, "max_rate_limit_wait": 60},
    )
    settings = ConnectionSettings.from_connection(conn)
    assert settings.base_url == "http://127.0.0.1:8123"
    assert (
        settings.timeout,
        settings.retry_policy.max_retries,
        settings.retry_policy.max_rate_limit_wait,
    ) == (5, 2, 60)
    assert settings.headers["Authorization"] == "Bearer t"
    empty_form = SimpleNamespace(
        conn_id="c",
        host="",
        schema=None,
        port=None,
        password="t",
        extra_dejson={"timeout": None, "max_retries": None, "max_rate_limit_wait": ""},
    )
    settings = ConnectionSettings.from_connection(empty_form)
    assert (settings.timeout, settings.max_retries, settings.max_rate_limit_wait) == (30, 5, 900)
    assert "'t'" not in repr(settings)
    with pytest.raises(exc.XComplianceError, match="no bearer token"):
        ConnectionSettings.from_connection(SimpleNamespace(conn_id="c", password="", extra_dejson={}))


def test_storage_errors():
    expired = storage_error(
        400,
        b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>ExpiredToken</Code>"
        b"<Message>The provided token has expired.</Message></Error>",
    )
    assert expired.code == "ExpiredToken" and expired.status == 400
    forged = storage_error(403, b"<Error><Code>SignatureDoesNotMatch</Code><Message>no</Message></Error>")
    assert forged.code == "SignatureDoesNotMatch"
    assert type(forged) is exc.XComplianceStorageError


def test_storage_errors_show_code_and_details_never_the_url():
    body = (
        b"<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not "
        b"match the signature you provided.</Message><Details>header content-type: signed text/plain, "
        b"sent application/octet-stream</Details></Error>"
    )
    error = storage_error(403, body, "The upload to compliance job 7")
    assert str(error) == (
        "The upload to compliance job 7: HTTP 403 SignatureDoesNotMatch: "
        "header content-type: signed text/plain, sent application/octet-stream"
    )
    assert error.details.startswith("header content-type")


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_storage_answers_gcs_asks_to_retry_are_transient(status):
    error = storage_error(status, b"<Error><Code>X</Code><Message>m</Message></Error>")
    assert isinstance(error, exc.XComplianceStorageUnavailable)
    assert RetryPolicy().delay(1, error) is not None
    final = storage_error(404, b"<Error><Code>NoSuchKey</Code><Message>m</Message></Error>")
    assert RetryPolicy().delay(1, final) is None


def test_a_usage_capped_429_is_final_and_says_so():
    body = {
        "title": "UsageCapExceeded",
        "detail": "Usage cap exceeded: Monthly product cap",
        "type": "https://api.x.com/2/problems/usage-capped",
        "period": "Monthly",
        "status": 429,
    }
    with pytest.raises(exc.XComplianceUsageCapped, match="usage cap is spent.*Monthly product cap") as caught:
        answer(429, body, {"x-rate-limit-reset": "1"})
    assert RetryPolicy().delay(1, caught.value) is None
    with pytest.raises(exc.XComplianceRateLimited):  # a plain 429 stays a rate limit
        answer(429, {"title": "Too Many Requests", "type": "about:blank", "status": 429})


def test_a_retry_budget_counts_failures_in_a_row():
    budget = RetryPolicy(max_retries=2, backoff=0.01).budget()
    transient = exc.XComplianceTransportError("dropped")
    assert budget.delay(transient) is not None and budget.delay(transient) is not None
    assert budget.delay(transient) is None  # the third failure in a row: give up
    budget.progressed()
    assert budget.delay(transient) is not None  # progress starts the count again


# --- the one rule for reusing a job -------------------------------------------------------


def _job(name, status="created", created_minutes_ago=5, window_minutes_left=10, job_id="1"):
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    return ComplianceJob(
        id=job_id,
        name=name,
        status=status,
        created_at=now - timedelta(minutes=created_minutes_ago),
        upload_expires_at=now + timedelta(minutes=window_minutes_left),
    ), now


def test_own_job_is_the_newest_usable_job_of_that_name():
    (mine, now), (other, _) = _job("run-a", job_id="1"), _job("run-b", job_id="2")
    assert own_job([other, mine], "run-a", now=now) is mine
    assert own_job([other], "run-a", now=now) is None


def test_own_job_skips_ended_jobs_and_dead_upload_windows_but_keeps_started_ones():
    failed, now = _job("n", status="failed")
    dead, _ = _job("n", window_minutes_left=-1)
    running, _ = _job("n", status="in_progress", window_minutes_left=-30)
    assert own_job([failed, dead], "n", now=now) is None
    assert own_job([failed, dead, running], "n", now=now) is running


def test_own_job_ignores_creation_time_unless_asked():
    """A cleared task (whose run has a new start date) still finds its run's job by its unique name;
    a reused user-given name counts only jobs created after the run was."""
    old, now = _job("weekly", created_minutes_ago=60 * 24 * 7, status="complete")
    assert own_job([old], "weekly", now=now) is old
    assert own_job([old], "weekly", created_after=now - timedelta(hours=1), now=now) is None
    assert own_job([old], "weekly", created_after=now - timedelta(days=8), now=now) is old


def test_a_poller_waits_for_the_rate_limit_reset_after_a_429_else_its_interval():
    reset = datetime.now(UTC) + timedelta(seconds=120)
    limited = exc.XComplianceRateLimited(429, "Too Many Requests", reset_at=reset)
    assert 119 <= poll_again_after(limited, 5.0) <= 121
    assert poll_again_after(exc.XComplianceServerError(503, "Service Unavailable"), 5.0) == 5.0
