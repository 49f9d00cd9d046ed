"""Where a job's storage objects are: their names and signed URLs at X, the files holding them here.

A mixin of ``state.EmulatorState``, apart from the lifecycle because none of it depends on a
job's status: it reads only the state's config, signer, base URL, app id and data directory.
"""

from __future__ import annotations

import math
import secrets
from pathlib import Path

from .config import Config
from .jobs import Job
from .signing import UrlSigner

__all__ = ["JobObjects"]

BUCKETS = {"tweets": "twttr-tweet-compliance", "users": "twttr-user-compliance"}
MAX_SIGNED_EXPIRES = 604800  # GCS V4 signed URLs live at most 7 days
RESUMABLE_START_HEADERS = {"content-length": "0", "content-type": "text/plain", "x-goog-resumable": "start"}
SIMPLE_UPLOAD_HEADERS = {"content-type": "text/plain"}


class JobObjects:
    """The names, signed URLs and local files of a job's objects (a mixin of ``EmulatorState``)."""

    # Set by EmulatorState (its __init__ and bind).
    config: Config
    data_dir: Path
    signer: UrlSigner | None
    base_url: str
    app_id: str

    # -- names and signed URLs ------------------------------------------------------------

    def object_path(self, job: Job, kind: str) -> str:
        return f"/{BUCKETS[job.type]}/{job.id}/{kind}/{self.app_id}_{job.id}"

    @staticmethod
    def signed_expires(created: float, window: float) -> int:
        """``X-Goog-Expires`` for a window of ``window`` real seconds opening at ``created``
        (the URL's ``X-Goog-Date`` is ``created`` truncated to the second): the window itself
        when it is a whole number of seconds (900, 604800: the URL then lives exactly that
        long from ``X-Goog-Date``, as at X), else -- fast clocks -- rounded up so the URL covers
        the whole window; never above GCS's limit of 604800."""
        if window >= 1 and window == int(window):
            expires = int(window)
        else:
            expires = max(1, math.ceil(created - int(created) + window))
        return min(expires, MAX_SIGNED_EXPIRES)

    def signed_request(self, job: Job, kind: str) -> tuple[str, str, dict[str, str], str]:
        """(method, path, signed headers without host, query string) of a job's signed URL."""
        cfg = self.config
        path = self.object_path(job, kind)
        if kind == "submission":
            method = "POST" if job.resumable else "PUT"
            headers = RESUMABLE_START_HEADERS if job.resumable else SIMPLE_UPLOAD_HEADERS
            window = cfg.real(cfg.upload_window_seconds)
        else:
            method, headers, window = "GET", {}, cfg.real(cfg.download_window_seconds)
        date = int(job.created)
        if self.signer is None:
            raise RuntimeError("no signed URLs before the state is bound to its server")
        query = self.signer.sign(method, path, date, self.signed_expires(job.created, window), headers)
        return method, path, dict(headers), query

    def _signed(self, job: Job, kind: str) -> str:
        _, path, _, query = self.signed_request(job, kind)
        return f"{self.base_url}{path}?{query}"

    def upload_url(self, job: Job) -> str:
        return self._signed(job, "submission")

    def download_url(self, job: Job) -> str:
        return self._signed(job, "delivery")

    # -- files ----------------------------------------------------------------------------

    def job_dir(self, job_id: str) -> Path:
        path = self.data_dir / job_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def submission_path(self, job_id: str) -> Path:
        return self.data_dir / job_id / "submission.txt"

    def results_path(self, job_id: str) -> Path:
        """The results, decompressed (JSON Lines), for inspection."""
        return self.data_dir / job_id / "results.jsonl"

    def stored_results_path(self, job_id: str) -> Path:
        """The results object as storage holds it (gzip unless empty or ``gzip_results``
        is off; then the same bytes as ``results_path``)."""
        return self.data_dir / job_id / "results.jsonl.gz"

    def new_part_path(self, job_id: str, prefix: str) -> Path:
        return self.job_dir(job_id) / f"{prefix}-{secrets.token_hex(8)}.part"
