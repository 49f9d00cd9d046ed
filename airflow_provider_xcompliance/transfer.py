"""Moving bytes through X's signed Google Cloud Storage URLs: the simple PUT, the resumable
session and the download.

The hook hands this module a ``requests`` session and a retry policy and keeps the API calls;
this module imports nothing from the hook, so the dependency runs one way: hook → transfer →
protocol. Signed and session URLs are credentials: they are masked as soon as they are seen,
sent without an Authorization header, never followed as redirects, and never put in an error.

Retries follow GCS's advice: 408, 429 and 5xx answers and dropped connections are retried with
exponential backoff and jitter, and a resumable upload resumes from what its session holds
rather than starting again. Each transfer has one :class:`~.protocol.RetryBudget`.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any, TypeVar

import requests
from airflow.sdk.log import mask_secret
from isal import isal_zlib
from urllib3.exceptions import HTTPError as Urllib3Error

from airflow_provider_xcompliance import protocol
from airflow_provider_xcompliance.exceptions import (
    IdSourceChanged,
    XComplianceError,
    XComplianceStorageError,
    XComplianceStorageUnavailable,
    XComplianceTransportError,
)
from airflow_provider_xcompliance.storage import BLOCK_SIZE

if TYPE_CHECKING:
    from airflow_provider_xcompliance.upload_sessions import SessionKeeper

GRANULE = 256 * 1024  # GCS keeps resumable uploads in whole units of this size
DEFAULT_CHUNK_SIZE = 32 * GRANULE  # 8 MiB per resumable request
DOWNLOAD_READ_SIZE = 512 * 1024  # compressed bytes per read from the socket (a few MiB inflated)
MAX_INFLATE = 16 * 1024 * 1024  # decompressed bytes per block, whatever the compression ratio
TEXT_PLAIN = {"Content-Type": "text/plain"}  # the upload URLs are signed over this header

_STORED_RANGE = re.compile(r"bytes=0-(\d+)")
_URL_SECRETS = re.compile(r"(?:[Ss]ignature|upload_id|upload_session)[=/]([^&/?]+)")

T = TypeVar("T")


def mask_url(url: str | None) -> None:
    """Signed and session URLs are credentials: mask them whole and their secret parts too."""
    if url:
        mask_secret(url)
        for value in _URL_SECRETS.findall(url):
            mask_secret(value)


class SizedBody:
    """A re-readable file of known length: ``requests`` sends it with a ``Content-Length`` (not
    chunked, which GCS refuses) in large blocks, and a retry reads it again from the start."""

    def __init__(self, file: IO[bytes], length: int, block_size: int = BLOCK_SIZE) -> None:
        self.file = file
        self.length = length
        self.block_size = block_size

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        self.file.seek(0)
        while block := self.file.read(self.block_size):
            yield block


class BodyLengthChanged(Exception):
    """A :class:`StreamedBody` came out longer or shorter than the length it announced (or its
    producer found that it will, and stopped it early)."""


class StreamedBody:
    """A body of announced length whose blocks ``open_blocks`` produces afresh on each pass (a
    retry reads its source again), sent as they come instead of from a file.

    The block that completes the body is held back until the stream has ended at exactly
    ``length`` bytes. A stream that turns out longer or shorter (:class:`BodyLengthChanged`),
    or fails on the way (a bad line), stops the request before its last byte, so the storage
    server, which keeps an object only once its whole ``Content-Length`` has arrived, never
    gets one."""

    def __init__(self, open_blocks: Callable[[], Iterator[bytes]], length: int) -> None:
        self.open_blocks = open_blocks
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        blocks = self.open_blocks()
        try:
            held, total = b"", 0
            for block in blocks:
                total += len(block)
                if total > self.length:
                    raise BodyLengthChanged(f"more than the {self.length} bytes announced")
                if block:
                    if held:
                        yield held
                    held = block
            if total != self.length:
                raise BodyLengthChanged(f"{total} bytes, not the {self.length} announced")
            yield held
        finally:
            close = getattr(blocks, "close", None)
            if close:
                close()


class SignedUrlClient:
    """Uploads to and downloads from signed URLs with one retry budget per transfer.

    :param session: the ``requests`` session to send with (no Authorization header on it).
    :param timeout: seconds per request (connect and each read).
    :param policy: when and how long to wait before trying again.
    :param log: where retries are reported.
    """

    def __init__(
        self, session: requests.Session, *, timeout: float, policy: protocol.RetryPolicy, log: logging.Logger
    ) -> None:
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
            except protocol.TRANSIENT_ERRORS as error:
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
            if session_url and held is None:  # an earlier try completed it; its answer was lost
                self.log.info("The upload session of an earlier try is already complete")
                keeper.forget()
                return sum(len(block) for block in blocks)
            if session_url:
                self.log.info("Resuming the upload session of an earlier try at byte %d", held)
                blocks, offset = _skipped(blocks, held, what), held
            else:
                keeper.forget()
        if session_url is None:
            session_url = self._start_session(upload_url, what, budget)
            if keeper is not None:
                keeper.save(session_url)
        for chunk, last in _chunks(blocks, chunk_size):
            self._send_chunk(session_url, chunk, offset, last, budget, what)
            budget.progressed()  # the session holds the whole chunk
            offset += len(chunk)
        if keeper is not None:
            keeper.forget()
        return offset

    def _resume(
        self, session_url: str, what: str, budget: protocol.RetryBudget
    ) -> tuple[str | None, int | None]:
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
            except protocol.TRANSIENT_ERRORS as error:
                self._wait(budget, error)

    def _start_session(self, upload_url: str, what: str, budget: protocol.RetryBudget) -> str:
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
            except protocol.TRANSIENT_ERRORS as error:
                self._wait(budget, error)

    def _send_chunk(
        self, session_url: str, chunk: Chunk, start: int, last: bool, budget: protocol.RetryBudget, what: str
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
            except protocol.TRANSIENT_ERRORS as exc:
                error = exc
            self._wait(budget, error)
            try:  # where does the session stand? (a lost answer may hide a success)
                stored = self._session_state(
                    self._send(
                        "PUT", session_url, what, data=b"", headers={"Content-Range": f"bytes */{total}"}
                    ),
                    what,
                )
            except protocol.TRANSIENT_ERRORS:
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
                    blocks = read_ahead(_decoded_blocks(response, what))
                    try:
                        return consume(blocks)
                    finally:
                        blocks.close()
            except protocol.TRANSIENT_ERRORS as error:
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
        return protocol.storage_error(response.status_code, response.content, what)

    def _wait(self, budget: protocol.RetryBudget, error: Exception, give_up: Exception | None = None) -> None:
        time.sleep(budget.next_wait(error, self.log, give_up=give_up))  # errors here name their transfer


def read_ahead(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Produce ``items`` in a background thread, up to ``depth`` ahead of the consumer, so that
    reading, validating or decompressing the next block overlaps with sending or writing this
    one (socket I/O, file writes and inflating release the GIL). An error of the producer is raised
    in the consumer, at the item where it happened; closing the consumer stops the producer."""
    handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(kind: str, value: Any) -> bool:
        while not stop.is_set():
            try:
                handoff.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer("item", item):
                    return
            offer("end", None)
        except BaseException as exc:  # handed over to the consumer, which raises it
            offer("error", exc)
        finally:
            close = getattr(items, "close", None)
            if close:
                close()

    producer = threading.Thread(target=produce, name="x-compliance-read-ahead", daemon=True)
    producer.start()
    try:
        while True:
            kind, value = handoff.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        producer.join()


class Chunk:
    """A chunk of a resumable upload as the blocks it is made of (nothing is copied), sent with
    its length from any offset within it (after a 308 that kept only part of it)."""

    def __init__(self, parts: list[memoryview], skip: int = 0) -> None:
        self.parts = parts
        self.skip = skip
        self.size = sum(map(len, parts)) - skip

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[memoryview]:
        skip = self.skip
        for part in self.parts:
            if skip >= len(part):
                skip -= len(part)
                continue
            yield part[skip:]
            skip = 0

    def after(self, skip: int) -> Chunk:
        return Chunk(self.parts, self.skip + skip)


def _skipped(blocks: Iterable[bytes], count: int, what: str) -> Iterator[bytes]:
    """``blocks`` without their first ``count`` bytes (which a resumed session holds already)."""
    for block in blocks:
        if count >= len(block):
            count -= len(block)
            continue
        yield block[count:] if count else block
        count = 0
    if count:
        raise IdSourceChanged(
            f"{what}: the upload session of an earlier try holds more bytes than the IDs now have: "
            "the IDs file changed; upload it with a new job"
        )


def _chunks(blocks: Iterable[bytes], size: int) -> Iterator[tuple[Chunk, bool]]:
    """Re-cut a stream into ``size``-byte chunks, flagging the last (short, or empty for an
    empty stream). A full chunk is let go only once a further byte exists, so the last chunk
    is known to be the last when it is sent. Memory: the blocks of one chunk."""
    parts: list[memoryview] = []
    filled = 0
    for block in blocks:
        view = memoryview(block)
        while filled + len(view) > size:
            taken = size - filled
            parts.append(view[:taken])
            view = view[taken:]
            yield Chunk(parts), False
            parts, filled = [], 0
        if view:
            parts.append(view)
            filled += len(view)
    yield Chunk(parts), True


def _gzip_inflater():
    """ISA-L's gzip inflater: zlib's interface, about 4x zlib's speed, the GIL released."""
    return isal_zlib.decompressobj(wbits=isal_zlib.MAX_WBITS | 16)


def _decoded_blocks(response: requests.Response, what: str) -> Iterator[bytes]:
    """The body of a download, decompressed when it comes gzip-encoded (GCS serves gzip-stored
    objects as stored to clients that accept gzip); a truncated stream is a transport error."""
    gzipped = "gzip" in response.headers.get("Content-Encoding", "").lower()
    inflater = _gzip_inflater() if gzipped else None
    received = False
    held = b""  # the start of a further gzip member, sent on with the next read
    try:
        while True:
            data = response.raw.read(DOWNLOAD_READ_SIZE, decode_content=False)
            received = received or bool(data)
            if inflater is None:
                if not data:
                    break
                yield data
                continue
            data, held = held + data, b""  # (b"" + data is data itself: no copy)
            if not data:
                break
            while data:
                block = inflater.decompress(data, MAX_INFLATE)
                if block:
                    yield block
                data = inflater.unconsumed_tail
                if inflater.eof and inflater.unused_data:
                    # A further gzip member. Its header may be cut by the end of this read, and
                    # ISA-L refuses some headers in two pieces (with a header CRC or an extra
                    # field), so it goes on with the next read (an empty one at the end).
                    held, inflater = inflater.unused_data, _gzip_inflater()
                    break
        if inflater is not None and received and not inflater.eof:
            raise XComplianceTransportError(f"{what}: the compressed results ended early")
    except isal_zlib.error as exc:
        raise XComplianceTransportError(f"{what}: the compressed results are damaged ({exc})") from None
    except (requests.RequestException, Urllib3Error, OSError) as exc:
        raise XComplianceTransportError(f"{what}: the connection broke off ({type(exc).__name__})") from None
