"""The emulator's options, defined once: the fields of ``Config``.

Each field is one option. Its name is the ``XComplianceEmulator`` keyword, its default is the
constructor's, and its metadata describe the ``serve`` command's flag (help text and argparse
settings). The constructor (``XComplianceEmulator(**options)``), the running state
(``EmulatorState.config``) and the command line all read this one table, so that an option is
added, renamed or given another default in one place, and the three cannot drift apart.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .faults import PROFILES
from .rules import JOB_TYPES, GroundTruthSpec

__all__ = ["ACTIVE_MODES", "API_ENDPOINTS", "RATE_LIMIT", "UNKNOWN_JOB_STATUSES", "Config"]

ACTIVE_MODES = ("per_type", "global", "none")
API_ENDPOINTS = ("create_job", "list_jobs", "get_job")
UNKNOWN_JOB_STATUSES = (200, 404)
RATE_LIMIT = 150  # requests per window of an API endpoint not given a limit


def _option(
    default: Any,
    help: str | None = None,
    *,
    flags: tuple[str, ...] = (),
    from_cli: Callable[[list[str]], Any] | None = None,
    **argparse_settings: Any,
) -> Any:
    """A ``Config`` field: one option, with its default and its ``serve`` flag.

    ``flags`` name the flag when it is not ``--the-option-name``; ``argparse_settings`` go to
    ``add_argument`` as they are. A repeatable flag (``action="append"``) has ``from_cli``, which
    makes the option's value of the strings given; without the flag the option keeps its default.
    """
    metadata = {"help": help, "flags": flags, "from_cli": from_cli, "argparse": argparse_settings}
    return field(default=default, metadata=metadata)


def rate_limit_from_cli(values: list[str]) -> int | dict[str, int]:
    """``--rate-limit N|ENDPOINT=N`` (repeatable): a limit for every endpoint, or for one."""
    total: int | None = None
    per_endpoint: dict[str, int] = {}
    for value in values:
        endpoint, sep, number = value.partition("=")
        if not sep:
            total = int(value)
        elif endpoint in API_ENDPOINTS:
            per_endpoint[endpoint] = int(number)
        else:
            raise ValueError(f"--rate-limit: unknown endpoint {endpoint!r}")
    limit = RATE_LIMIT if total is None else total
    if not per_endpoint:
        return limit
    return {**dict.fromkeys(API_ENDPOINTS, limit), **per_endpoint}


def ground_truth_from_cli(values: list[str]) -> GroundTruthSpec:
    """``--ground-truth PATH|TYPE=PATH`` (repeatable): one file for every job type, or one per type."""
    per_type: dict[str, str] = {}
    for value in values:
        job_type, sep, path = value.partition("=")
        if sep and job_type in JOB_TYPES:
            per_type[job_type] = path
        elif len(values) == 1:
            return value
        else:
            raise ValueError("--ground-truth: give one PATH, or TYPE=PATH per type")
    return per_type


def _per_endpoint(rate_limit: int | Mapping[str, int]) -> dict[str, int]:
    if isinstance(rate_limit, Mapping):
        unknown = set(rate_limit) - set(API_ENDPOINTS)
        if unknown:
            raise ValueError(f"rate_limit keys must be among {API_ENDPOINTS}: {sorted(unknown)}")
        limits = dict.fromkeys(API_ENDPOINTS, RATE_LIMIT)
        limits.update(rate_limit)
    else:
        limits = dict.fromkeys(API_ENDPOINTS, rate_limit)
    for endpoint, limit in limits.items():
        if not isinstance(limit, int) or limit < 0:
            raise ValueError(f"rate limit of {endpoint} must be a non-negative integer")
    return limits


@dataclass(frozen=True, kw_only=True)
class Config:
    """The emulator's options; durations are emulated seconds (divided by ``speed``).

    Made by ``XComplianceEmulator(**options)``, which passes the options on: they are checked
    here (``ValueError``), and numbers and switches are given the type of their default.
    """

    host: str = _option("127.0.0.1", "address to bind (default %(default)s)")
    port: int = _option(0, "port to bind (default %(default)s: a free one)", type=int)
    public_host: str | None = _option(
        None,
        "HOST:PORT clients use to reach the emulator, when not --host:--port "
        "(signed URLs are built and checked on it)",
    )
    token: str = _option("emulator-token", "the valid bearer token")
    data_dir: str | os.PathLike | None = _option(
        None, "where uploads and results are kept (default: a temporary directory removed on exit)"
    )
    speed: float = _option(1.0, "time acceleration factor", type=float)
    processing_seconds: float = _option(
        30.0, "emulated seconds from upload to complete/failed (default %(default)s)", type=float
    )
    one_active_job: str = _option(
        "per_type", "how many jobs may be active (created/in_progress) at once", choices=ACTIVE_MODES
    )
    rate_limit: int | Mapping[str, int] = _option(
        RATE_LIMIT,
        "requests per window, for every endpoint or one of "
        f"{', '.join(API_ENDPOINTS)} (repeatable; default {RATE_LIMIT})",
        action="append",
        metavar="N|ENDPOINT=N",
        from_cli=rate_limit_from_cli,
    )
    rate_window_seconds: float = _option(900.0, type=float)
    upload_window_seconds: float = _option(900.0, type=float)
    download_window_seconds: float = _option(604800.0, type=float)
    session_window_seconds: float = _option(
        604800.0, "lifetime of a resumable upload session (default a week)", type=float
    )
    sessions_outlive_upload_window: bool = _option(
        True,
        "a resumable upload started within the upload window may send its "
        "chunks after it, for the session's lifetime (default: yes; "
        "--no-sessions-outlive-upload-window bounds the chunks too)",
        action=argparse.BooleanOptionalAction,
    )
    pickup_seconds: float = _option(
        0.0,
        "emulated seconds a job stays 'created' after its upload, during "
        "which a second simple PUT replaces the submission (default 0)",
        type=float,
    )
    ground_truth: GroundTruthSpec = _option(
        None,
        "ground-truth CSV (id,reason[,action]) for every job type, or "
        "TYPE=PATH per type (repeatable); default: the built-in rule",
        action="append",
        metavar="PATH|TYPE=PATH",
        from_cli=ground_truth_from_cli,
    )
    estimated_completion: bool = _option(
        False,
        "pre-release API mode: in_progress jobs carry estimated_completion "
        "(default: no, as the released API)",
        action=argparse.BooleanOptionalAction,
    )
    unknown_job_status: int = _option(
        200,
        "answer to GET /2/compliance/jobs/:id of an unknown id: 200 with an "
        "errors array and no data (default, X's spec) or 404",
        type=int,
        choices=UNKNOWN_JOB_STATUSES,
    )
    usage_capped: bool = _option(
        False, "every API request answers 429 usage-capped (UsageCapExceeded)", action="store_true"
    )
    gzip: bool = _option(True, "never gzip API answers", flags=("--no-gzip",), action="store_false")
    gzip_results: bool = _option(
        True,
        "store and serve results uncompressed (default: gzip-compressed, "
        "served with decompressive transcoding)",
        flags=("--no-gzip-results",),
        action="store_false",
    )
    fault_profile: str = _option(
        "none",
        "'all': the recurring deterministic fault schedule of the faults "
        "module (408/429/503/drops on signed URLs, partial 308s, lost final "
        "answers, NoSuchKey after completion, 503 on lookups)",
        flags=("--faults", "--fault-profile"),
        choices=PROFILES,
    )

    def __post_init__(self) -> None:
        if not self.token:
            raise ValueError("token must not be empty")
        if not self.speed > 0:
            raise ValueError("speed must be positive")
        if self.one_active_job not in ACTIVE_MODES:
            raise ValueError(f"one_active_job must be one of {ACTIVE_MODES}")
        if self.unknown_job_status not in UNKNOWN_JOB_STATUSES:
            raise ValueError(f"unknown_job_status must be one of {UNKNOWN_JOB_STATUSES}")
        if self.fault_profile not in PROFILES:
            raise ValueError(f"fault_profile must be one of {PROFILES}")
        for name in (
            "processing_seconds",
            "pickup_seconds",
            "rate_window_seconds",
            "upload_window_seconds",
            "download_window_seconds",
            "session_window_seconds",
        ):
            value = getattr(self, name)
            if value < 0 or (value == 0 and name not in ("processing_seconds", "pickup_seconds")):
                raise ValueError(f"{name} must be positive")
        if isinstance(self.ground_truth, Mapping) and set(self.ground_truth) - set(JOB_TYPES):
            raise ValueError(f"ground_truth keys must be among {JOB_TYPES}")
        _per_endpoint(self.rate_limit)  # checks the limits
        # Frozen, so set as dataclasses do: durations and speed become floats, switches bools,
        # and a mapping of rate limits is copied (changing the caller's leaves these alone).
        for option in fields(self):
            if isinstance(option.default, bool | float):
                object.__setattr__(self, option.name, type(option.default)(getattr(self, option.name)))
        object.__setattr__(self, "unknown_job_status", int(self.unknown_job_status))
        if isinstance(self.rate_limit, Mapping):
            object.__setattr__(self, "rate_limit", dict(self.rate_limit))

    @property
    def rate_limits(self) -> dict[str, int]:
        """Requests per window of each API endpoint (``rate_limit`` filled in)."""
        return _per_endpoint(self.rate_limit)

    def real(self, seconds: float) -> float:
        """Real seconds that ``seconds`` of emulated time last."""
        return seconds / self.speed
