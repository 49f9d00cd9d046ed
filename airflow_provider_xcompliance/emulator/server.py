"""The HTTP/1.1 server: connection handling, routing, fault injection and the access log.

Built on ``http.server.ThreadingHTTPServer`` (one thread per connection) with
``protocol_version = "HTTP/1.1"`` so that a ``requests.Session`` keeps its connection alive.
Every answer has a ``Content-Length`` or chunked framing; an answer sent before the request
body was read drains the body first (up to 64 MiB, else it closes the connection) so the next
request on the connection is read correctly.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer

from . import api, gcs_downloads, gcs_errors, gcs_uploads
from .faults import ENDPOINTS, Fault
from .httpio import BodyError, BodyReader, ChunkedWriter, accepts_gzip
from .state import API_ENDPOINTS, EmulatorState

__all__ = ["EmulatorHTTPServer", "EmulatorRequestHandler", "Exchange", "resolve"]

logger = logging.getLogger("airflow_provider_xcompliance.emulator")

API_VERSION = "2.167"
DRAIN_LIMIT = 64 * 1024 * 1024
JOBS_PATH = "/2/compliance/jobs"
_STORAGE_PATH = re.compile(
    r"/(?:twttr-tweet-compliance|twttr-user-compliance)/[0-9]{1,19}/(submission|delivery)/"
    r"[0-9]{1,19}_[0-9]{1,19}",
    re.ASCII,
)


def resolve(method: str, path: str, query: str):
    """(endpoint name, handler function) for a request."""
    if path == JOBS_PATH:
        if method == "POST":
            return "create_job", api.create_job
        if method in ("GET", "HEAD"):
            return "list_jobs", api.list_jobs
        return "api", api.method_not_allowed
    if path.startswith(JOBS_PATH + "/") and "/" not in path[len(JOBS_PATH) + 1 :]:
        if method in ("GET", "HEAD"):
            return "get_job", api.get_job
        return "api", api.method_not_allowed
    if path == "/2" or path.startswith("/2/"):
        return "api", api.not_found
    m = _STORAGE_PATH.fullmatch(path)
    if m:
        if m[1] == "delivery":
            return "download", gcs_downloads.download
        if "upload_id" in urllib.parse.parse_qs(query, keep_blank_values=True):
            return "upload_session", gcs_uploads.session_put
        return "upload", gcs_uploads.upload
    return "unknown", gcs_errors.no_such_key


def _is_api(endpoint: str) -> bool:
    return endpoint in API_ENDPOINTS or endpoint == "api"


class Exchange:
    """One request and its answer, as seen by the endpoint functions."""

    def __init__(
        self, handler: EmulatorRequestHandler, state: EmulatorState, endpoint: str, path: str, query: str
    ):
        self._handler = handler
        self.state = state
        self.endpoint = endpoint
        self.method = handler.command
        self.path = path
        self.query = query
        self.headers = handler.headers
        self.request_version = handler.request_version
        self.received_at = state.now()
        self.body: BodyReader | None = None
        self.status = 0  # 0: no answer (yet)
        self.started = False
        self.truncate_after: int | None = None
        self._recorded = False

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def record(self) -> None:
        """Write the access-log entry once, before the client can see the outcome (a client
        that inspects ``request_log`` right after its answer must find the entry there)."""
        if not self._recorded:
            self._recorded = True
            self.state.record(self.method, self.endpoint, self.status)

    def _settle_body(self) -> bool:
        """Read what is left of the request body; True when the connection must close."""
        if self.body is None:
            return True
        if self.body.done:
            return False
        try:
            return not self.body.discard(DRAIN_LIMIT)
        except BodyError:
            return True

    def begin(
        self,
        status: int,
        headers: dict | None = None,
        *,
        content_type: str | None = None,
        length: int | None = 0,
        reason: str | None = None,
    ) -> ChunkedWriter | None:
        """Send the status line and headers; with ``length=None`` the body is chunked and the
        returned writer frames it."""
        close = self._settle_body()
        h = self._handler
        h.send_response(status, reason)
        if content_type:
            h.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        writer = None
        if length is None:
            h.send_header("Transfer-Encoding", "chunked")
            writer = ChunkedWriter(h.wfile)
        else:
            h.send_header("Content-Length", str(length))
        if close:
            h.send_header("Connection", "close")
        self.started = True
        self.status = status
        self.record()
        h.end_headers()  # sends the status line and headers
        return writer

    def write(self, data: bytes) -> None:
        self._handler.wfile.write(data)

    def respond(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: str | None = None,
        headers: dict | None = None,
        reason: str | None = None,
        compressible: bool = False,
    ) -> None:
        headers = dict(headers or {})
        if compressible:
            headers["Vary"] = "Accept-Encoding"
            if body and self.state.config.gzip and accepts_gzip(self.header("Accept-Encoding")):
                body = gzip.compress(body, compresslevel=6, mtime=0)
                headers["Content-Encoding"] = "gzip"
        self.begin(status, headers, content_type=content_type, length=len(body), reason=reason)
        if body and self.method != "HEAD":
            self.write(body)

    def json(self, status: int, obj, headers: dict | None = None) -> None:
        body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        all_headers = {"api-version": API_VERSION}
        all_headers.update(headers or {})
        self.respond(
            status,
            body,
            content_type="application/json; charset=utf-8",
            headers=all_headers,
            compressible=True,
        )

    def drop(self) -> None:
        """Close the connection without (finishing) an answer."""
        self.record()
        self._handler.close_connection = True


class EmulatorRequestHandler(BaseHTTPRequestHandler):
    """Routes each request to the emulator's API or its signed-URL storage."""

    protocol_version = "HTTP/1.1"
    server_version = "XComplianceEmulator/1.0"
    sys_version = ""
    timeout = 120  # seconds a connection may stay silent (idle keep-alive or stalled body)
    disable_nagle_algorithm = True
    server: EmulatorHTTPServer

    def version_string(self) -> str:
        return self.server_version

    def log_request(self, code="-", size="-") -> None:
        pass  # the access log is written by _dispatch, without the query string

    def log_error(self, format, *args) -> None:
        # The default message can contain the request line, whose query string is a credential.
        logger.debug("HTTP protocol error on a connection")

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _dispatch(self) -> None:
        state: EmulatorState = self.server.state
        target = self.path
        if target.startswith(("http://", "https://")):
            parts = urllib.parse.urlsplit(target)
            path, query = parts.path or "/", parts.query
        else:
            path, _, query = target.partition("?")
        endpoint, handler = resolve(self.command, path, query)
        ex = Exchange(self, state, endpoint, path, query)
        try:
            try:
                body = ex.body = BodyReader(self.rfile, self.headers)
            except BodyError:
                self.close_connection = True
                (api.bad_framing if _is_api(endpoint) else gcs_errors.bad_framing)(ex)
                return
            fault = state.faults.front(endpoint) if endpoint in ENDPOINTS else None
            if fault is not None and self._apply_fault(ex, body, fault):
                return
            handler(ex)
        except BodyError:
            self.close_connection = True
            if not ex.started:
                ex.body = None
                (api.bad_framing if _is_api(endpoint) else gcs_errors.bad_framing)(ex)
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client went away: nothing to answer
        except Exception:
            logger.exception("internal error answering %s %s", self.command, endpoint)
            self.close_connection = True
            if not ex.started:
                ex.body = None
                try:
                    if _is_api(endpoint):
                        api.internal_error(ex)
                    else:
                        gcs_errors.internal_error(ex)
                except OSError:
                    pass
        finally:
            ex.record()

    @staticmethod
    def _apply_fault(ex: Exchange, body: BodyReader, fault: Fault) -> bool:
        """Apply an injected fault; True when it has answered (or dropped) the request."""
        if fault.kind == "delay":
            assert fault.seconds is not None  # make_fault requires them of a delay
            time.sleep(fault.seconds)
            return False
        if fault.kind == "drop":
            if ex.endpoint == "download" and fault.after_bytes is not None:
                ex.truncate_after = fault.after_bytes
                return False
            if ex.endpoint in ("upload", "upload_session"):
                body.skip(fault.after_bytes or 0)  # received, then thrown away
            else:
                body.discard(DRAIN_LIMIT)
            ex.drop()
            return True
        body.discard()
        if fault.kind == "usage_cap":
            api.usage_capped(ex, ex.endpoint)
            return True
        assert fault.status is not None  # the last front kind, status: make_fault requires one
        if _is_api(ex.endpoint):
            api.fault_status(ex, ex.endpoint, fault.status, fault.reset_seconds)
        else:
            gcs_errors.fault_status(ex, fault.status)
        return True


class EmulatorHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that knows its state and can cut all its connections."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], state: EmulatorState):
        self.state = state
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, EmulatorRequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn), which can hang offline.
        TCPServer.server_bind(self)
        # server_address, read again from the socket: a str host (typeshed allows bytes there too).
        self.server_name, self.server_port = self.socket.getsockname()[:2]

    def get_request(self):
        sock, address = super().get_request()
        with self._connections_lock:
            self._connections.add(sock)
        return sock, address

    def shutdown_request(self, request) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_all_connections(self) -> None:
        """Cut every open connection (idle keep-alive ones included), for a prompt stop."""
        with self._connections_lock:
            connections = list(self._connections)
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:
        logger.debug("connection error from %s", client_address, exc_info=sys.exc_info())
