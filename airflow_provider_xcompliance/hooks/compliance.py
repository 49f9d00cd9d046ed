"""The client of X's batch compliance API that every operator, sensor and trigger uses."""

from __future__ import annotations

import asyncio
import functools
import ssl
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import requests
from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from airflow_provider_xcompliance.client.bodies import BodyLengthChanged, SizedBody, StreamedBody
from airflow_provider_xcompliance.client.codec import (
    JOBS_PATH,
    create_job_body,
    job_from_answer,
    job_path,
    jobs_from_answer,
    list_jobs_params,
    parse_rate_limit,
    read_api_answer,
)
from airflow_provider_xcompliance.client.jobs import COMPLETE, CREATED, ComplianceJob, RateLimit
from airflow_provider_xcompliance.client.masking import mask_url
from airflow_provider_xcompliance.client.matching import own_job, upload_window_left
from airflow_provider_xcompliance.client.retry import RetryPolicy
from airflow_provider_xcompliance.client.signed_urls import DEFAULT_CHUNK_SIZE, SignedUrlClient
from airflow_provider_xcompliance.client.upload_sessions import VariableSessionKeeper, source_version
from airflow_provider_xcompliance.connection import (
    CONNECTION_FIELDS,
    CONNECTION_TYPE,
    CONNECTION_UI_BEHAVIOUR,
    DEFAULT_CONN_ID,
    OLD_CONNECTION_TYPE,
    ConnectionSettings,
)
from airflow_provider_xcompliance.exceptions import (
    JobEndedError,
    JobNotComplete,
    UploadWindowExpired,
    XComplianceAuthError,
    XComplianceConflict,
    XComplianceError,
    XComplianceStorageError,
    XComplianceTransportError,
)
from airflow_provider_xcompliance.id_files import (
    IdSource,
    ValidatedIds,
    canonical_length,
    id_source_name,
    is_id_file,
    source_blocks,
)
from airflow_provider_xcompliance.object_storage import Location, to_path
from airflow_provider_xcompliance.reports import DownloadSummary, UploadReport
from airflow_provider_xcompliance.results import ResultsSummary, land_results, results_target
from airflow_provider_xcompliance.utils.progress import Progress


class XComplianceHook(BaseHook):
    """Talks to X's batch compliance API with the bearer token of an ``xcompliance`` connection.

    Connection: password = bearer token, host = API base URL (default ``https://api.x.com``),
    port (optional: added to a host that names none), extras ``timeout`` (seconds per request),
    ``max_retries`` (for 5xx answers, dropped connections and 429s) and ``max_rate_limit_wait``
    (longest wait for a 429's reset, in seconds). Connections of the old type ``x_compliance``
    are read the same way.

    :param x_conn_id: the ``xcompliance`` connection to use.
    """

    conn_name_attr = "x_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONNECTION_TYPE
    hook_name = "X Compliance"

    def __init__(self, x_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.x_conn_id = x_conn_id
        self.last_rate_limit: RateLimit | None = None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form for the Airflow 3.0/3.1 UIs, which read ``hidden_fields``,
        ``relabeling`` and ``placeholders`` here (3.2+ read the provider info's ``hidden-fields``
        style from ``__init__.py``, the one definition both come from)."""
        return {key.replace("-", "_"): value for key, value in CONNECTION_UI_BEHAVIOUR.items()}

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The extra fields for the Airflow 3.0/3.1 UIs, from the same ``CONNECTION_FIELDS`` as
        the provider info's ``conn-fields`` (3.2+). Their API server supplies wtforms stand-ins;
        where wtforms is absent the ImportError tells Airflow to skip the widgets."""
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import IntegerField, StringField
        from wtforms.validators import Optional

        widgets = {}
        for name, field in CONNECTION_FIELDS.items():
            kind = IntegerField if "integer" in field["schema"]["type"] else StringField
            widgets[name] = kind(
                lazy_gettext(field["label"]),
                widget=BS3TextFieldWidget(),
                validators=[Optional()],
                description=field["description"],
                default=field["schema"]["default"],
            )
        return widgets

    # --- connection ---------------------------------------------------------------------

    @cached_property
    def settings(self) -> ConnectionSettings:
        settings = ConnectionSettings.from_connection(self.get_connection(self.x_conn_id))
        mask_secret(settings.token)
        return settings

    @cached_property
    def session(self) -> requests.Session:
        return requests.Session()

    def get_conn(self) -> requests.Session:
        return self.session

    def test_connection(self) -> tuple[bool, str]:
        """One cheap real call (list tweets jobs), no retries; used by the UI's Test button."""
        no_retries = RetryPolicy(max_retries=0, max_rate_limit_wait=0)
        try:
            answer = self._call("GET", JOBS_PATH, params=list_jobs_params("tweets"), policy=no_retries)
        except XComplianceTransportError as exc:
            return False, f"Cannot reach {self.settings.base_url}: {exc}"
        except XComplianceAuthError as exc:
            return False, f"{exc}: check the bearer token (the connection's password)"
        except (XComplianceError, ValueError) as exc:
            return False, str(exc)
        jobs = jobs_from_answer(answer)
        return True, f"Connected to {self.settings.base_url}: {len(jobs)} recent tweets compliance job(s)"

    # --- the three endpoints ------------------------------------------------------------

    def create_job(self, job_type: str, name: str | None = None, resumable: bool = True) -> ComplianceJob:
        """Create a job. If a retried POST conflicts with a job of the same name that this very
        call created (the first attempt got through, its answer was lost), that job is returned."""
        body = create_job_body(job_type, name, resumable)
        started = datetime.now(UTC)
        try:
            return self._job(self._call("POST", JOBS_PATH, json=body))
        except XComplianceConflict:
            existing = own_job(self.list_jobs(job_type), name, created_after=started) if name else None
            if existing is None or existing.status != CREATED:
                raise
            self.log.info(
                "Job %s named %r was created by an earlier attempt of this call; using it", existing.id, name
            )
            return self.get_job(existing.id)  # fetched on its own: its signed URLs masked

    def get_job(self, job_id: str) -> ComplianceJob:
        return self._job(self._call("GET", job_path(job_id)))

    def list_jobs(self, job_type: str, status: str | None = None) -> list[ComplianceJob]:
        """Recent jobs of one type, newest first (an empty list when there are none)."""
        answer = self._call("GET", JOBS_PATH, params=list_jobs_params(job_type, status))
        # Not masked here: a listing is only searched (names, statuses), its URLs are never used
        # or shown (repr and metadata() leave them out), and Airflow's masker recompiles one
        # pattern of every secret on each new one, so masking a long listing cost seconds of
        # CPU per call (11 s for 50 jobs). The job that is used comes from get_job, masked.
        return jobs_from_answer(answer)

    def find_job(self, job_type: str, name: str) -> ComplianceJob | None:
        """The newest listed job of that type and name, or None."""
        return next((job for job in self.list_jobs(job_type) if job.name == name), None)

    def _call(
        self, method: str, path: str, policy: RetryPolicy | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        settings = self.settings
        budget = (policy or settings.retry_policy).budget()
        while True:
            try:
                response = self.session.request(
                    method,
                    settings.base_url + path,
                    headers=settings.headers,
                    timeout=settings.timeout,
                    **kwargs,
                )
                self.last_rate_limit = parse_rate_limit(response.headers)
                return read_api_answer(response.status_code, response.headers, response.content)
            except requests.RequestException as exc:
                error: Exception = XComplianceTransportError(f"{method} {path}: {type(exc).__name__}")
            except XComplianceError as exc:
                error = exc
            time.sleep(budget.next_wait(error, self.log, f"{method} {path}"))

    def _job(self, answer: dict[str, Any]) -> ComplianceJob:
        return self._mask_urls(job_from_answer(answer))

    @staticmethod
    def _mask_urls(job: ComplianceJob) -> ComplianceJob:
        for url in (job.upload_url, job.download_url):
            mask_url(url)
        return job

    # --- async path (the trigger) -------------------------------------------------------

    async def aget_job(self, job_id: str) -> ComplianceJob:
        """``get_job`` for the triggerer's event loop: same parsing, same retry policy, no blocking."""
        # No signed URL leaves the trigger (events carry job.metadata()), so nothing to mask.
        return job_from_answer(await self._acall(job_path(job_id)))

    async def alist_jobs(self, job_type: str) -> list[ComplianceJob]:
        """``list_jobs`` for the triggerer's event loop (not masked, as ``list_jobs``)."""
        return jobs_from_answer(await self._acall(JOBS_PATH, list_jobs_params(job_type)))

    async def _acall(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        import httpx

        # Airflow masks the connection's password as it hands it over; nothing here logs it.
        settings = ConnectionSettings.from_connection(await self.aget_connection(self.x_conn_id))
        budget = settings.retry_policy.budget()
        async with httpx.AsyncClient(
            timeout=settings.timeout, headers=settings.headers, verify=_ssl_context()
        ) as client:
            while True:
                try:
                    response = await client.get(settings.base_url + path, params=params)
                    self.last_rate_limit = parse_rate_limit(response.headers)
                    return read_api_answer(response.status_code, response.headers, response.content)
                except httpx.TransportError as exc:
                    error: Exception = XComplianceTransportError(f"GET {path}: {type(exc).__name__}")
                except XComplianceError as exc:
                    error = exc
                await asyncio.sleep(budget.next_wait(error, self.log, f"GET {path}"))

    # --- upload -------------------------------------------------------------------------

    @cached_property
    def transfers(self) -> SignedUrlClient:
        """Uploads and downloads through the job's signed URLs (no bearer token there)."""
        settings = self.settings
        return SignedUrlClient(
            self.session, timeout=settings.timeout, policy=settings.retry_policy, log=self.log
        )

    def check_id_source(self, source: IdSource) -> None:
        """Raise :class:`IdSourceError` ("not found: ...") unless ``source`` can be read: called
        before a job is created, so a wrong path never leaves a job behind."""
        if is_id_file(source):
            path = to_path(source)
            for _ in source_blocks(path, size=1):
                break

    def upload_ids(
        self,
        job: ComplianceJob | str,
        source: IdSource,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        keep_session: bool = False,
    ) -> UploadReport:
        """Stream the IDs of ``source`` to the job's signed upload URL, validating every line.

        ``source`` is an ``ObjectStoragePath``, a URL (``s3://conn@bucket/ids.txt``), a local
        path, or an iterable of IDs. A bad line raises :class:`InvalidIdError` (source, line,
        why) before the job can receive the file. Jobs created with ``resumable=True`` stream
        through a resumable session in ``chunk_size`` chunks and survive dropped connections;
        the last chunk goes out only after the last line passed. Simple jobs get one ``PUT``
        with a ``Content-Length``, whose last byte goes out only after the last line passed:
        an ID file that looks canonical streams as it is validated, anything else is validated
        into a spool file first.

        With ``keep_session`` (the operators set it; it needs a running task), a resumable
        session is kept, encrypted, in an Airflow Variable, and a later try with the same ID
        file resumes it where it stands, even after the upload window (see ``upload_sessions``).
        """
        if not isinstance(job, ComplianceJob) or not job.upload_url:
            job = self.get_job(job.id if isinstance(job, ComplianceJob) else job)
        if job.status != CREATED:
            raise XComplianceError(f"Compliance job {job.id} is {job.status}: it no longer accepts an upload")
        if not job.upload_url:
            raise XComplianceError(f"The API gave compliance job {job.id} no upload URL")
        keeper = self._session_keeper(job, source) if keep_session and job.resumable else None
        if keeper is None or not keeper.session_url:  # a kept session outlives the window
            self._check_upload_window(job)

        name = id_source_name(source)
        self.log.info(
            "Uploading IDs from %s to compliance job %s (%s upload)",
            name,
            job.id,
            "resumable" if job.resumable else "simple",
        )
        what = f"The upload to compliance job {job.id}"
        ids = ValidatedIds(source, name, Progress(self.log, f"Upload to job {job.id}", "IDs"))
        try:
            if job.resumable:
                self.transfers.upload_resumable(job.upload_url, ids(), what, chunk_size, keeper)
            else:
                self._put_ids(job.upload_url, ids, what)
        except XComplianceStorageError as error:
            if error.code == "ExpiredToken":
                raise UploadWindowExpired(
                    f"The upload URL of compliance job {job.id} has expired "
                    f"(HTTP {error.status} {error.code}: {error.details or error.message}): "
                    "create a new job and upload right away"
                ) from None
            raise
        finally:
            ids.close()
        normalizer, progress = ids.normalizer, ids.progress
        seconds = progress.done(normalizer.bytes_out, normalizer.ids)
        return UploadReport(
            job_id=job.id,
            source=name,
            ids=normalizer.ids,
            bytes=normalizer.bytes_out,
            resumable=job.resumable,
            already_uploaded=False,
            seconds=round(seconds, 3),
        )

    def _put_ids(self, upload_url: str, ids: ValidatedIds, what: str) -> None:
        """The simple upload: one ``PUT`` with a ``Content-Length``, which must be known before
        the first byte. An ID file that looks canonical (the usual case, and the only one whose
        length is known up front) is streamed as it is validated; any other source, or a file
        that turns out not to be, is validated into a spool file in the task's temporary
        directory first. Either way the upload completes only once every line has passed."""
        length = canonical_length(ids.source)
        if length is not None:
            try:
                body = StreamedBody(lambda: ids(unchanged=True), length)
                self.transfers.put_object(upload_url, body, what)
                return
            except BodyLengthChanged as exc:  # normalised on the way (CRLF, blanks), or it changed
                self.log.info(
                    "%s cannot be sent as it is (%s): validating it into a spool file and sending "
                    "that instead",
                    ids.name,
                    exc,
                )
        with tempfile.TemporaryFile(prefix="x-compliance-ids-") as spool:
            for block in ids():
                spool.write(block)
            self.transfers.put_object(upload_url, SizedBody(spool, ids.normalizer.bytes_out), what)

    def _session_keeper(self, job: ComplianceJob, source: IdSource) -> VariableSessionKeeper | None:
        if not is_id_file(source):
            return None  # IDs given in memory have no version to check a resume against
        try:
            version = source_version(to_path(source))
        except OSError:
            return None  # unreadable: the upload itself reports it
        return VariableSessionKeeper(job.id, self.settings.token, version, self.log)

    def _check_upload_window(self, job: ComplianceJob) -> None:
        expires_at = job.upload_expires_at
        left = upload_window_left(job)  # None exactly when expires_at is
        if expires_at is not None and left is not None and left.total_seconds() <= 0:
            raise UploadWindowExpired(
                f"The upload URL of compliance job {job.id} expired at {expires_at.isoformat()} "
                "(15 minutes after the job was created): create a new job and upload right away"
            )

    # --- download -----------------------------------------------------------------------

    def download_results(self, job: ComplianceJob | str, destination: Location) -> DownloadSummary:
        """Stream the job's results to ``destination`` as JSON Lines and summarise them.

        A ``destination`` ending in ``/`` is a folder: the results land in it as
        ``<job type>-<job id>.jsonl``. The job is fetched fresh (signed URLs expire and may be
        re-signed), and again when its download URL turns out to have expired. The results are
        asked for gzip-compressed and decompressed as they stream. The object appears at
        ``destination`` complete or not at all; a retried download writes it again whole.
        """
        job, url = self._complete_job(job.id if isinstance(job, ComplianceJob) else str(job))
        target = results_target(destination, job)
        what = f"The download of compliance job {job.id}'s results"
        progress = Progress(self.log, f"Download of job {job.id}", "lines")

        def land(blocks: Iterator[bytes]) -> ResultsSummary:
            self.log.info("Downloading the results of compliance job %s to %s", job.id, target)
            return land_results(blocks, target, f"results of job {job.id}", progress)

        summary = self.transfers.download(url, lambda: self._complete_job(job.id)[1], land, what)
        seconds = progress.done(summary.bytes, summary.lines)
        return DownloadSummary(
            job_id=job.id,
            job_type=job.type,
            path=str(target),
            **summary.as_dict(),
            seconds=round(seconds, 3),
        )

    def _complete_job(self, job_id: str) -> tuple[ComplianceJob, str]:
        """The job, fetched fresh, if it is complete; with its signed download URL."""
        job = self.get_job(job_id)
        if job.status != COMPLETE:
            error_class = JobEndedError if job.has_ended_badly else JobNotComplete
            raise error_class(job.id, job.status, job.error)
        if not job.download_url:
            raise XComplianceError(f"The API gave complete compliance job {job.id} no download URL")
        return job, job.download_url


class XComplianceOldTypeHook(XComplianceHook):
    """The hook of connections stored under the old type name ``x_compliance`` (before
    ``xcompliance``): the same client, registered under the old name so they keep loading."""

    conn_type = OLD_CONNECTION_TYPE
    hook_name = "X Compliance (old type name x_compliance)"

    # Airflow 3.0/3.1 read the form only from a class that defines these itself, not a parent.
    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return super().get_ui_field_behaviour()

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        return super().get_connection_form_widgets()


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One TLS context per process for the async client. Building one loads the CA bundle from
    disk (about 60 ms here), which would block the triggerer's event loop on every poll."""
    import certifi

    return ssl.create_default_context(cafile=certifi.where())
