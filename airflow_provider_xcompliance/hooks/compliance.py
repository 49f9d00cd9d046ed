"""The client of X's batch compliance API that every operator, sensor and trigger uses."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from functools import cached_property
from typing import Any, Callable

import requests

from airflow.sdk import BaseHook, ObjectStoragePath
from airflow.sdk.log import mask_secret

from airflow_provider_xcompliance import protocol
from airflow_provider_xcompliance.exceptions import (
    JobEndedError,
    JobNotComplete,
    UploadWindowExpired,
    XComplianceAuthError,
    XComplianceConflict,
    XComplianceError,
    XComplianceServerError,
    XComplianceStorageError,
    XComplianceTransportError,
)
from airflow_provider_xcompliance.ids import IdNormalizer, blocks_from_ids, normalized_blocks
from airflow_provider_xcompliance.models import COMPLETE, CREATED, ComplianceJob, RateLimit
from airflow_provider_xcompliance.progress import Progress
from airflow_provider_xcompliance.results import ResultsSummary
from airflow_provider_xcompliance.storage import Location, atomic_writer, read_blocks, to_path

RESUMABLE_GRANULE = 256 * 1024
DEFAULT_CHUNK_SIZE = 32 * RESUMABLE_GRANULE  # 8 MiB per resumable chunk
_STORED_RANGE = re.compile(r"bytes=0-(\d+)")
_URL_SECRETS = re.compile(r"(?:[Ss]ignature|upload_id|upload_session)[=/]([^&/?]+)")

IdSource = Location | Iterable[int | str]


class XComplianceHook(BaseHook):
    """Talks to X's batch compliance API with the bearer token of an ``x_compliance`` connection.

    Connection: password = bearer token, host = API base URL (default ``https://api.x.com``),
    extras ``timeout`` (seconds per request), ``max_retries`` (for 5xx answers, dropped
    connections and 429s) and ``max_rate_limit_wait`` (longest wait for a 429's reset, in seconds).

    :param x_conn_id: the ``x_compliance`` connection to use.
    """

    conn_name_attr = "x_conn_id"
    default_conn_name = "x_compliance_default"
    conn_type = "x_compliance"
    hook_name = "X Compliance"

    def __init__(self, x_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.x_conn_id = x_conn_id
        self.last_rate_limit: RateLimit | None = None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form for Airflow 3.1 (3.2+ reads it from the provider metadata)."""
        from airflow_provider_xcompliance import CONNECTION_UI_BEHAVIOUR

        return CONNECTION_UI_BEHAVIOUR

    # --- connection ---------------------------------------------------------------------

    @cached_property
    def settings(self) -> protocol.ConnectionSettings:
        settings = protocol.ConnectionSettings.from_connection(self.get_connection(self.x_conn_id))
        mask_secret(settings.token)
        return settings

    @cached_property
    def session(self) -> requests.Session:
        return requests.Session()

    def get_conn(self) -> requests.Session:
        return self.session

    def test_connection(self) -> tuple[bool, str]:
        """One cheap real call (list tweets jobs), no retries; used by the UI's Test button."""
        no_retries = protocol.RetryPolicy(max_retries=0, max_rate_limit_wait=0)
        try:
            answer = self._call("GET", protocol.JOBS_PATH, params=protocol.list_jobs_params("tweets"), policy=no_retries)
        except XComplianceTransportError as exc:
            return False, f"Cannot reach {self.settings.base_url}: {exc}"
        except XComplianceAuthError as exc:
            return False, f"{exc}: check the bearer token (the connection's password)"
        except (XComplianceError, ValueError) as exc:
            return False, str(exc)
        jobs = protocol.jobs_from_answer(answer)
        return True, f"Connected to {self.settings.base_url}: {len(jobs)} recent tweets compliance job(s)"

    # --- the three endpoints ------------------------------------------------------------

    def create_job(self, job_type: str, name: str | None = None, resumable: bool = False) -> ComplianceJob:
        """Create a job. If a retried POST conflicts with a job of the same name that this very
        call created (the first attempt got through, its answer was lost), that job is returned."""
        body = protocol.create_job_body(job_type, name, resumable)
        started = datetime.now(timezone.utc)
        try:
            return self._job(self._call("POST", protocol.JOBS_PATH, json=body))
        except XComplianceConflict:
            existing = self.find_job(job_type, name) if name else None
            if not (existing and existing.status == CREATED and existing.created_at
                    and existing.created_at >= started - protocol.CLOCK_SKEW):
                raise
            self.log.info("Job %s named %r was created by an earlier attempt of this call; using it", existing.id, name)
            return existing

    def get_job(self, job_id: str) -> ComplianceJob:
        return self._job(self._call("GET", protocol.job_path(job_id)))

    def list_jobs(self, job_type: str, status: str | None = None) -> list[ComplianceJob]:
        """Recent jobs of one type, newest first (an empty list when there are none)."""
        answer = self._call("GET", protocol.JOBS_PATH, params=protocol.list_jobs_params(job_type, status))
        jobs = protocol.jobs_from_answer(answer)
        for job in jobs:
            self._mask_urls(job)
        return jobs

    def find_job(self, job_type: str, name: str) -> ComplianceJob | None:
        """The newest listed job of that type and name, or None."""
        return next((job for job in self.list_jobs(job_type) if job.name == name), None)

    def _call(self, method: str, path: str, policy: protocol.RetryPolicy | None = None, **kwargs: Any) -> dict[str, Any]:
        settings = self.settings
        policy = policy or settings.retry_policy
        for attempt in itertools.count(1):
            try:
                response = self.session.request(
                    method, settings.base_url + path, headers=settings.headers, timeout=settings.timeout, **kwargs
                )
                self.last_rate_limit = protocol.parse_rate_limit(response.headers)
                return protocol.read_api_answer(response.status_code, response.headers, response.content)
            except requests.RequestException as exc:
                error: Exception = XComplianceTransportError(f"{method} {path}: {type(exc).__name__}")
            except XComplianceError as exc:
                error = exc
            time.sleep(self._retry_delay(policy, attempt, error, f"{method} {path}"))

    def _job(self, answer: dict[str, Any]) -> ComplianceJob:
        return self._mask_urls(protocol.job_from_answer(answer))

    @staticmethod
    def _mask_urls(job: ComplianceJob) -> ComplianceJob:
        for url in (job.upload_url, job.download_url):
            _mask_url(url)
        return job

    # --- async path (the trigger) -------------------------------------------------------

    async def aget_job(self, job_id: str) -> ComplianceJob:
        """``get_job`` for the triggerer's event loop: same parsing, same retry policy, no blocking."""
        import httpx

        # Airflow masks the connection's password as it hands it over; nothing here logs it.
        settings = protocol.ConnectionSettings.from_connection(await self.aget_connection(self.x_conn_id))
        path = protocol.job_path(job_id)
        async with httpx.AsyncClient(timeout=settings.timeout, headers=settings.headers) as client:
            for attempt in itertools.count(1):
                try:
                    response = await client.get(settings.base_url + path)
                    self.last_rate_limit = protocol.parse_rate_limit(response.headers)
                    # No signed URL leaves the trigger (events carry job.metadata()), so nothing to mask.
                    return protocol.job_from_answer(
                        protocol.read_api_answer(response.status_code, response.headers, response.content)
                    )
                except httpx.TransportError as exc:
                    error: Exception = XComplianceTransportError(f"GET {path}: {type(exc).__name__}")
                except XComplianceError as exc:
                    error = exc
                await asyncio.sleep(self._retry_delay(settings.retry_policy, attempt, error, f"GET {path}"))

    def _retry_delay(self, policy: protocol.RetryPolicy, attempt: int, error: Exception, what: str) -> float:
        """How long to wait before trying ``what`` again; raises ``error`` when the policy gives up.
        Every retry loop here (sync, async, upload, chunk, download) goes through it."""
        delay = policy.delay(attempt, error)
        if delay is None:
            raise error
        self.log.warning("%s failed (%s); trying again in %.1f s", what, error, delay)
        return delay

    # --- upload -------------------------------------------------------------------------

    def upload_ids(self, job: ComplianceJob | str, source: IdSource, chunk_size: int = DEFAULT_CHUNK_SIZE) -> dict[str, Any]:
        """Stream the IDs of ``source`` to the job's signed upload URL, validating every line.

        ``source`` is an ``ObjectStoragePath``, a URL (``s3://conn@bucket/ids.txt``), a local
        path, or an iterable of IDs. A bad line raises :class:`InvalidIdError` (source, line)
        before the upload completes, so the job never receives a partial file. Jobs created
        with ``resumable=True`` use the resumable protocol and survive dropped connections.
        """
        if not isinstance(job, ComplianceJob) or not job.upload_url:
            job = self.get_job(job.id if isinstance(job, ComplianceJob) else job)
        if job.status != CREATED:
            raise XComplianceError(f"Compliance job {job.id} is {job.status}: it no longer accepts an upload")
        if not job.upload_url:
            raise XComplianceError(f"The API gave compliance job {job.id} no upload URL")
        self._check_upload_window(job)
        if chunk_size <= 0 or chunk_size % RESUMABLE_GRANULE:
            raise ValueError(f"chunk_size must be a positive multiple of {RESUMABLE_GRANULE} bytes")

        name, open_blocks, reopenable = _id_source(source)
        self.log.info("Uploading IDs from %s to compliance job %s (%s upload)", name, job.id,
                      "resumable" if job.resumable else "simple")
        progress = Progress(self.log, f"Upload to job {job.id}", "IDs")
        send = self._upload_resumable if job.resumable else self._upload_simple
        for attempt in itertools.count(1):
            normalizer = IdNormalizer(name)
            blocks = _reporting(normalized_blocks(open_blocks(), name, normalizer), normalizer, progress)
            try:
                send(job, blocks, chunk_size)
                break
            except (XComplianceTransportError, XComplianceServerError) as error:
                if not reopenable:  # an iterable of IDs cannot be read a second time
                    raise
                delay = self._retry_delay(self.settings.retry_policy, attempt, error, f"The upload to job {job.id}")
                self._check_upload_window(job)
                time.sleep(delay)
        seconds = progress.done(normalizer.bytes_out, normalizer.ids)
        return {
            "job_id": job.id,
            "source": name,
            "ids": normalizer.ids,
            "bytes": normalizer.bytes_out,
            "resumable": job.resumable,
            "seconds": round(seconds, 3),
        }

    def _check_upload_window(self, job: ComplianceJob) -> None:
        left = protocol.upload_window_left(job)
        if left is not None and left.total_seconds() <= 0:
            raise UploadWindowExpired(
                f"The upload URL of compliance job {job.id} expired at {job.upload_expires_at.isoformat()} "
                "(15 minutes after the job was created): create a new job and upload right away"
            )

    def _upload_simple(self, job: ComplianceJob, blocks: Iterator[bytes], chunk_size: int) -> None:
        """One ``PUT`` of the whole stream (chunked transfer encoding); nothing to resume."""
        response = self._storage("PUT", job.upload_url, data=blocks, headers={"Content-Type": "text/plain"})
        if response.status_code != 200:
            raise self._upload_refused(job, response)

    def _upload_resumable(self, job: ComplianceJob, blocks: Iterator[bytes], chunk_size: int) -> None:
        """Google Cloud Storage's XML resumable protocol: start a session, then send chunks
        (multiples of 256 KiB, total unknown until the last), resuming after a dropped one."""
        response = self._storage(
            "POST",
            job.upload_url,
            headers={"Content-Type": "text/plain", "x-goog-resumable": "start", "Content-Length": "0"},
        )
        if response.status_code != 201 or "Location" not in response.headers:
            raise self._upload_refused(job, response)
        session_url = response.headers["Location"]
        _mask_url(session_url)
        offset = 0
        for chunk, last in _chunks(blocks, chunk_size):
            self._send_chunk(job, session_url, chunk, offset, last)
            offset += len(chunk)

    def _send_chunk(self, job: ComplianceJob, session_url: str, chunk: bytes, start: int, last: bool) -> None:
        """Send one chunk; after a failure, ask the session how much it holds and send the rest."""
        end = start + len(chunk)
        total = str(end) if last else "*"
        position = start  # the first byte the session is not known to hold
        for attempt in itertools.count(1):
            try:
                content_range = f"bytes {position}-{end - 1}/{total}" if position < end else f"bytes */{total}"
                response = self._storage("PUT", session_url, data=chunk[position - start:],
                                         headers={"Content-Range": content_range})
                if response.status_code in (200, 201):
                    return
                if response.status_code == 308:
                    held = _stored_end(response)
                    if held >= end and not last:
                        return
                    if held > position:  # the server kept part of it: send the rest at once
                        position = held
                        continue
                    error: Exception = XComplianceTransportError(f"the session kept nothing of bytes {position}-{end - 1}")
                else:
                    error = self._upload_refused(job, response)
                    if not isinstance(error, XComplianceServerError):
                        raise error
            except XComplianceTransportError as exc:
                error = exc
            time.sleep(self._retry_delay(self.settings.retry_policy, attempt, error,
                                         f"The chunk at byte {position} of the upload to job {job.id}"))
            try:
                held = self._stored_bytes(job, session_url, total)
            except (XComplianceTransportError, XComplianceServerError):
                continue  # send again from where we were; the session skips what it already has
            if held is None or (held >= end and not last):
                return  # the chunk did arrive; only the answer was lost
            if held < start:
                raise XComplianceError(
                    f"Cannot resume the upload to job {job.id}: the server kept {held} bytes, "
                    f"but this chunk starts at byte {start}"
                )
            position = held

    def _stored_bytes(self, job: ComplianceJob, session_url: str, total: str) -> int | None:
        """Ask the session how much it has (``bytes */TOTAL``); None when it is complete."""
        response = self._storage("PUT", session_url, data=b"", headers={"Content-Range": f"bytes */{total}"})
        if response.status_code in (200, 201):
            return None
        if response.status_code != 308:
            raise self._upload_refused(job, response)
        return _stored_end(response)

    def _upload_refused(self, job: ComplianceJob, response: requests.Response) -> XComplianceError:
        error = _refusal(response, f"The upload URL of compliance job {job.id}")
        if isinstance(error, XComplianceStorageError) and error.code == "ExpiredToken":
            return UploadWindowExpired(f"The upload URL of compliance job {job.id} has expired ({error}): "
                                       "create a new job and upload right away")
        return error

    def _storage(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """A request to a signed URL: no Authorization header, and the URL never in an error."""
        try:
            # No redirects: a resumable session answers 308 ("Resume Incomplete"), not a redirect.
            return self.session.request(method, url, timeout=self.settings.timeout, allow_redirects=False, **kwargs)
        except requests.RequestException as exc:
            raise XComplianceTransportError(f"{method} to the signed URL failed: {type(exc).__name__}") from None

    # --- download -----------------------------------------------------------------------

    def download_results(self, job: ComplianceJob | str, destination: Location) -> dict[str, Any]:
        """Stream the job's JSON Lines results to ``destination`` and summarise them.

        A ``destination`` ending in ``/`` is a folder: the results land in it as
        ``<job type>-<job id>.jsonl``. The download URL is fetched fresh (signed URLs expire and may be re-signed). The
        object appears at ``destination`` complete or not at all; a retried download writes
        the same complete content again.
        """
        job_id = job.id if isinstance(job, ComplianceJob) else str(job)
        for attempt in itertools.count(1):
            job = self.get_job(job_id)
            if job.status != COMPLETE:
                error_class = JobEndedError if job.has_ended_badly else JobNotComplete
                raise error_class(job.id, job.status, job.error)
            if not job.download_url:
                raise XComplianceError(f"The API gave complete compliance job {job.id} no download URL")
            target = _results_target(destination, job)
            try:
                summary, seconds = self._download_once(job, target)
                break
            except (XComplianceTransportError, XComplianceServerError) as error:
                time.sleep(self._retry_delay(self.settings.retry_policy, attempt, error, f"The download of job {job.id}"))
        return {
            "job_id": job.id,
            "job_type": job.type,
            "path": str(target),
            **summary.as_dict(),
            "seconds": round(seconds, 3),
        }

    def _download_once(self, job: ComplianceJob, target: Any) -> tuple[ResultsSummary, float]:
        with self._storage("GET", job.download_url, stream=True) as response:
            if response.status_code != 200:
                raise _refusal(response, f"The download URL of compliance job {job.id}")
            summary = ResultsSummary(f"results of job {job.id}")
            progress = Progress(self.log, f"Download of job {job.id}", "lines")
            self.log.info("Downloading the results of compliance job %s to %s", job.id, target)
            try:
                with atomic_writer(target) as output:
                    for block in response.iter_content(chunk_size=1024 * 1024):
                        output.write(block)
                        summary.feed(block)
                        progress.update(summary.bytes, summary.lines)
                    summary.finish()
            except requests.RequestException as exc:
                raise XComplianceTransportError(f"the connection broke off: {type(exc).__name__}") from None
        return summary, progress.done(summary.bytes, summary.lines)


def _refusal(response: requests.Response, what: str) -> XComplianceError:
    """A signed-URL request that did not succeed: a 5xx is worth retrying, anything else is final."""
    if response.status_code >= 500:
        return XComplianceServerError(status=response.status_code, title=f"{what} failed",
                                      detail=f"the storage server answered {response.status_code}")
    error = protocol.storage_error(response.status_code, response.content)
    return XComplianceStorageError(error.status, error.code, f"{what} was refused: {error.message}")


def _mask_url(url: str | None) -> None:
    """Signed and session URLs are credentials: mask them whole and their secret parameters too."""
    if url:
        mask_secret(url)
        for value in _URL_SECRETS.findall(url):
            mask_secret(value)


def _id_source(source: IdSource) -> tuple[str, Callable[[], Iterator[bytes]], bool]:
    """A name for errors, a way to (re)open the raw blocks, and whether reopening is possible."""
    if isinstance(source, (str, os.PathLike, ObjectStoragePath)):
        path = to_path(source)
        return str(path), lambda: read_blocks(path), True
    if isinstance(source, (bytes, bytearray)):
        raise TypeError("Pass IDs as a path, a URL or an iterable of IDs, not bytes")
    blocks = blocks_from_ids(source)
    return "the given IDs", lambda: blocks, False


def _results_target(destination: Location, job: ComplianceJob) -> ObjectStoragePath:
    if isinstance(destination, (str, os.PathLike)) and os.fspath(destination).endswith("/"):
        return to_path(destination) / f"{job.type or 'results'}-{job.id}.jsonl"
    return to_path(destination)


def _reporting(blocks: Iterator[bytes], normalizer: IdNormalizer, progress: Progress) -> Iterator[bytes]:
    for block in blocks:
        yield block
        progress.update(normalizer.bytes_out, normalizer.ids)


def _chunks(blocks: Iterable[bytes], size: int) -> Iterator[tuple[bytes, bool]]:
    """Re-cut a stream into ``size``-byte chunks, flagging the last (possibly short or empty) one."""
    buffer = bytearray()
    for block in blocks:
        buffer += block
        while len(buffer) > size:  # keep at least one byte back, so the last chunk is never empty
            yield bytes(buffer[:size]), False
            del buffer[:size]
    yield bytes(buffer), True


def _stored_end(response: requests.Response) -> int:
    """Bytes the resumable session holds, from its ``Range: bytes=0-N`` header (none: 0)."""
    match = _STORED_RANGE.fullmatch(response.headers.get("Range", "").strip())
    return int(match.group(1)) + 1 if match else 0
