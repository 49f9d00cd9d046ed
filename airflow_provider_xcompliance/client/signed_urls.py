"""Moving bytes through X's signed Google Cloud Storage URLs: the simple PUT, the resumable
session and the download.

The hook hands this module a ``requests`` session and a retry policy and keeps the API calls;
this module imports nothing from the hook, so the dependency runs one way: hook → signed_urls →
bodies, codec, retry, masking. Signed and session URLs are credentials: they are masked as soon as
they are seen, sent without an Authorization header, never followed as redirects, and never put in
an error.

Retries follow GCS's advice: 408, 429 and 5xx answers and dropped connections are retried with
exponential backoff and jitter, and a resumable upload resumes from what its session holds
rather than starting again. Each transfer has one :class:`~.RetryBudget`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

import requests

from airflow_provider_xcompliance.client.bodies import (
    Chunk,
    SizedBody,
    StreamedBody,
    decoded_blocks,
    resumable_chunks,
    skipped_bytes,
)
from airflow_provider_xcompliance.client.codec import storage_error
from airflow_provider_xcompliance.client.masking import mask_url
from airflow_provider_xcompliance.client.retry import TRANSIENT_ERRORS, RetryBudget, RetryPolicy
from airflow_provider_xcompliance.exceptions import (
    XComplianceError,
    XComplianceStorageError,
    XComplianceStorageUnavailable,
    XComplianceTransportError,
)
from airflow_provider_xcompliance.utils.logs import Log
from airflow_provider_xcompliance.utils.prefetch import read_ahead

if TYPE_CHECKING:
    from airflow_provider_xcompliance.client.upload_sessions import SessionKeeper

T = TypeVar("T")  # what a download's consumer makes of the blocks

GRANULE = 256 * 1024  # GCS keeps resumable uploads in whole units of this size
DEFAULT_CHUNK_SIZE = 32 * GRANULE  # 8 MiB per resumable request
TEXT_PLAIN = {"Content-Type": "text/plain"}  # the upload URLs are signed over this header

_STORED_RANGE = re.compile(r"bytes=0-(\d+)")


class SignedUrlClient:
    """Uploads to and downloads from signed URLs with one retry budget per transfer.

    :param session: the ``requests`` session to send with (no Authorization header on it).
    :param timeout: seconds per request (connect and each read).
    :param policy: when and how long to wait before trying again.
    :param log: where retries are reported.
    """

    def __init__(self, session: requests.Session, *, timeout: float, policy: RetryPolicy, log: Log) -> None:
        self.session = session
        self.timeout = timeout
        self.policy = policy
        self.log = log

    # --- simple upload ------------------------------------------------------------------

    def put_object(self, url: str, body: SizedBody | StreamedBody, what: str) -> None:
        """One ``PUT`` of the whole body with its length. A retry sends it again whole: a second
        PUT replaces the object, as GCS does."""
        budget = self.policy.budget()
        while True:
            try:
                response = self._send("PUT", url, what, data=body, headers=TEXT_PLAIN)
                if response.status_code in (200, 201):
                    return
                raise self.refused(response, what)
            except TRANSIENT_ERRORS as error:
                self._wait(budget, error)

    # --- resumable upload ---------------------------------------------------------------

    def upload_resumable(
        self,
        upload_url: str,
        blocks: Iterable[bytes],
        what: str,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        keeper: SessionKeeper | None = None,
    ) -> int:
        """Send ``blocks`` through a resumable session in chunks; returns the bytes of the upload.

        Only the start must fall inside the upload URL's 15 minutes: the session lives a week.
        The last chunk, the only one that says the total, is sent only once ``blocks`` ends
        without an error, so a source that fails validation never completes the upload. With a
        ``keeper``, a session an earlier try opened is resumed where it stands (``blocks`` are
        still read and validated from the start, the bytes it holds are not sent again), and a
        new session is handed to the keeper before its first chunk.
        """
        if chunk_size <= 0 or chunk_size % GRANULE:
            raise ValueError(f"chunk_size must be a positive multiple of {GRANULE} bytes")
        budget = self.policy.budget()
        session_url, offset = None, 0
        if keeper is not None and keeper.session_url:
            session_url, held = self._resume(keeper.session_url, what, budget)
            if session_url:
                if held is None:  # an earlier try completed it; its answer was lost
                    self.log.info("The upload session of an earlier try is already complete")
                    keeper.forget()
                    return sum(len(block) for block in blocks)
                self.log.info("Resuming the upload session of an earlier try at byte %d", held)
                blocks, offset = skipped_bytes(blocks, held, what), held
            else:
                keeper.forget()
        if session_url is None:
            session_url = self._start_session(upload_url, what, budget)
            if keeper is not None:
                keeper.save(session_url)
        for chunk, last in resumable_chunks(blocks, chunk_size):
            self._send_chunk(session_url, chunk, offset, last, budget, what)
            budget.progressed()  # the session holds the whole chunk
            offset += len(chunk)
        if keeper is not None:
            keeper.forget()
        return offset

    def _resume(self, session_url: str, what: str, budget: RetryBudget) -> tuple[str | None, int | None]:
        """Ask a kept session what it holds: ``(url, bytes held)``, ``(url, None)`` when it is
        complete, ``(None, 0)`` when the storage server no longer knows it."""
        mask_url(session_url)
        while True:
            try:
                response = self._send(
                    "PUT", session_url, what, data=b"", headers={"Content-Range": "bytes */*"}
                )
                if response.status_code in (404, 410):
                    error = self.refused(response, what)
                    self.log.info(
                        "The upload session of an earlier try is gone (%s); opening a new one", error
                    )
                    return None, 0
                return session_url, self._session_state(response, what)
            except TRANSIENT_ERRORS as error:
                self._wait(budget, error)

    def _start_session(self, upload_url: str, what: str, budget: RetryBudget) -> str:
        # The URL is signed over exactly these three headers and their values.
        headers = {**TEXT_PLAIN, "Content-Length": "0", "x-goog-resumable": "start"}
        while True:
            try:
                response = self._send("POST", upload_url, what, data=b"", headers=headers)
                if response.status_code in (200, 201) and response.headers.get("Location"):
                    session_url = response.headers["Location"]
                    mask_url(session_url)
                    budget.progressed()
                    return session_url
                if response.status_code in (200, 201):
                    raise XComplianceError(
                        f"{what}: the storage server opened no upload session (no Location)"
                    )
                raise self.refused(response, what)
            except TRANSIENT_ERRORS as error:
                self._wait(budget, error)

    def _send_chunk(
        self, session_url: str, chunk: Chunk, start: int, last: bool, budget: RetryBudget, what: str
    ) -> None:
        """Send one chunk until the session holds it. GCS may keep only whole 256 KiB units of
        it (a 308 whose ``Range`` ends early): then the rest is sent at once. After any failure
        the session is asked what it holds (``bytes */TOTAL``) and the chunk goes on from there.
        Only bytes the session newly holds count as progress for the retry budget."""
        end = start + len(chunk)
        total = str(end) if last else "*"
        held = start  # the first byte the session is not known to hold
        while True:
            try:
                if held < end:
                    response = self._send(
                        "PUT",
                        session_url,
                        what,
                        data=chunk.after(held - start),
                        headers={"Content-Range": f"bytes {held}-{end - 1}/{total}"},
                    )
                else:  # every byte is there; only the total is still to be said
                    response = self._send(
                        "PUT", session_url, what, data=b"", headers={"Content-Range": f"bytes */{total}"}
                    )
                stored = self._session_state(response, what)
                if stored is None or stored >= end and not last:
                    return self._check_complete(stored, last, what)
                if stored > held:  # part of it arrived: send the rest straight away
                    budget.progressed()
                    held = stored
                    continue
                error: XComplianceError = XComplianceTransportError(
                    f"{what}: the upload session kept nothing of bytes {held}-{end - 1}"
                )
            except TRANSIENT_ERRORS as exc:
                error = exc
            self._wait(budget, error)
            try:  # where does the session stand? (a lost answer may hide a success)
                stored = self._session_state(
                    self._send(
                        "PUT", session_url, what, data=b"", headers={"Content-Range": f"bytes */{total}"}
                    ),
                    what,
                )
            except TRANSIENT_ERRORS:
                continue  # try the chunk again; the next failure asks again
            if stored is None or stored >= end and not last:
                return self._check_complete(stored, last, what)
            if stored > held:
                budget.progressed()
            if stored < start:
                raise XComplianceError(
                    f"{what}: cannot resume: the upload session holds {stored} bytes, but the bytes before "
                    f"{start} were confirmed earlier and are no longer at hand; run the upload again"
                )
            held = stored

    def _session_state(self, response: requests.Response, what: str) -> int | None:
        """Bytes a resumable session holds (from a 308's ``Range``), or None once it is complete."""
        if response.status_code in (200, 201):
            return None
        if response.status_code == 308:
            match = _STORED_RANGE.fullmatch(response.headers.get("Range", "").strip())
            return int(match.group(1)) + 1 if match else 0  # no Range header: nothing stored yet
        raise self.refused(response, what)

    @staticmethod
    def _check_complete(stored: int | None, last: bool, what: str) -> None:
        if stored is None and not last:
            raise XComplianceError(f"{what}: the upload session ended before the last chunk was sent")

    # --- download -----------------------------------------------------------------------

    def download(
        self, url: str, renew_url: Callable[[], str], consume: Callable[[Iterator[bytes]], T], what: str
    ) -> T:
        """Stream the object at ``url`` into ``consume``, decompressed, and return what it returns.

        ``consume`` gets an iterator of decompressed blocks and is called again from scratch
        after a broken transfer, so it must write atomically. ``renew_url`` gives a freshly
        signed URL, once, when ``url`` has expired. A ``NoSuchKey`` right after the job
        completed is retried like a 5xx, then reported as missing results.
        """
        budget = self.policy.budget()
        renewed = False
        while True:
            try:
                with self._send(
                    "GET", url, what, stream=True, headers={"Accept-Encoding": "gzip"}
                ) as response:
                    if response.status_code != 200:
                        raise self.refused(response, what)
                    blocks = read_ahead(decoded_blocks(response, what))
                    try:
                        return consume(blocks)
                    finally:
                        blocks.close()
            except TRANSIENT_ERRORS as error:
                self._wait(budget, error)
            except XComplianceStorageError as error:
                if error.code == "ExpiredToken" and not renewed:
                    self.log.info("%s: the download URL has expired; asking for a freshly signed one", what)
                    url, renewed = renew_url(), True
                elif error.code == "NoSuchKey":  # not stored yet, right after completion
                    missing = XComplianceStorageError(
                        error.status,
                        error.code,
                        error.message,
                        f"the results object is still missing after {self.policy.max_retries + 1} tries "
                        f"({error.details or error.message})",
                        what,
                    )
                    self._wait(
                        budget,
                        XComplianceStorageUnavailable(
                            error.status, error.code, error.message, error.details, what
                        ),
                        give_up=missing,
                    )
                else:
                    raise

    # --- one request, one refusal, one wait ------------------------------------------------

    def _send(self, method: str, url: str, what: str, **kwargs) -> requests.Response:
        try:
            # No redirects: a resumable session answers 308 ("Resume Incomplete"), not a redirect.
            return self.session.request(method, url, timeout=self.timeout, allow_redirects=False, **kwargs)
        except requests.RequestException as exc:
            raise XComplianceTransportError(
                f"{what}: the {method} request failed ({type(exc).__name__})"
            ) from None

    @staticmethod
    def refused(response: requests.Response, what: str) -> XComplianceStorageError:
        """The storage server's refusal, with GCS's Code and Details and never the URL."""
        return storage_error(response.status_code, response.content, what)

    def _wait(self, budget: RetryBudget, error: Exception, give_up: Exception | None = None) -> None:
        time.sleep(budget.next_wait(error, self.log, give_up=give_up))  # errors here name their transfer
