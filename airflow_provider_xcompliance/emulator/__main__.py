"""Command line: run the emulator (``serve``, the default) or write a dataset (``generate``).

    python -m airflow_provider_xcompliance.emulator [serve] --port 8080 --speed 60
    python -m airflow_provider_xcompliance.emulator generate --count 1000000 --type tweets \\
        --ids ids.txt --truth truth.csv

``serve`` prints ``X compliance emulator listening on http://HOST:PORT`` once ready and runs
until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from dataclasses import fields

from .config import ACTIVE_MODES, API_ENDPOINTS, UNKNOWN_JOB_STATUSES, Config
from .dataset import generate_dataset
from .emulator import XComplianceEmulator
from .faults import PROFILES, parse_fault_spec
from .rules import JOB_TYPES

# The emulator's defaults are its options' (config.Config): the CLI repeats none of them.
DEFAULTS = {option.name: option.default for option in fields(Config)}

COMMANDS = ("serve", "generate")


def _rate_limit(values: list[str] | None):
    if not values:
        return 150
    total = None
    per_endpoint = {}
    for value in values:
        endpoint, sep, number = value.partition("=")
        if not sep:
            total = int(value)
        elif endpoint in API_ENDPOINTS:
            per_endpoint[endpoint] = int(number)
        else:
            raise ValueError(f"--rate-limit: unknown endpoint {endpoint!r}")
    if not per_endpoint:
        return total
    limits = dict.fromkeys(API_ENDPOINTS, 150 if total is None else total)
    limits.update(per_endpoint)
    return limits


def _ground_truth(values: list[str] | None):
    if not values:
        return None
    per_type = {}
    for value in values:
        job_type, sep, path = value.partition("=")
        if sep and job_type in JOB_TYPES:
            per_type[job_type] = path
        elif len(values) == 1:
            return value
        else:
            raise ValueError("--ground-truth: give one PATH, or TYPE=PATH per type")
    return per_type


def _fault(value: str) -> dict:
    try:
        return parse_fault_spec(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_xcompliance.emulator",
        description="Local emulator of X's batch compliance API. Subcommands: 'serve' (the "
        "default when none is given) runs the server; 'generate' writes a synthetic "
        "ID file and ground truth. See '<subcommand> --help'.",
    )
    sub = parser.add_subparsers(dest="command", metavar="{serve,generate}")

    serve = sub.add_parser(
        "serve",
        help="run the emulator (default)",
        description="Run the emulator until SIGINT/SIGTERM. Durations are "
        "emulated seconds; --speed makes them pass faster.",
    )
    serve.add_argument("--host", default=DEFAULTS["host"], help="address to bind (default %(default)s)")
    serve.add_argument(
        "--port", type=int, default=DEFAULTS["port"], help="port to bind (default %(default)s: a free one)"
    )
    serve.add_argument(
        "--public-host",
        default=None,
        help="HOST:PORT clients use to reach the emulator, when not --host:--port "
        "(signed URLs are built and checked on it)",
    )
    serve.add_argument("--token", default=DEFAULTS["token"], help="the valid bearer token")
    serve.add_argument(
        "--data-dir",
        default=None,
        help="where uploads and results are kept (default: a temporary directory removed on exit)",
    )
    serve.add_argument("--speed", type=float, default=DEFAULTS["speed"], help="time acceleration factor")
    serve.add_argument(
        "--processing-seconds",
        type=float,
        default=DEFAULTS["processing_seconds"],
        help="emulated seconds from upload to complete/failed (default %(default)s)",
    )
    serve.add_argument(
        "--one-active-job",
        choices=ACTIVE_MODES,
        default=DEFAULTS["one_active_job"],
        help="how many jobs may be active (created/in_progress) at once",
    )
    serve.add_argument(
        "--rate-limit",
        action="append",
        metavar="N|ENDPOINT=N",
        help="requests per window, for every endpoint or one of "
        f"{', '.join(API_ENDPOINTS)} (repeatable; default 150)",
    )
    serve.add_argument("--rate-window-seconds", type=float, default=DEFAULTS["rate_window_seconds"])
    serve.add_argument("--upload-window-seconds", type=float, default=DEFAULTS["upload_window_seconds"])
    serve.add_argument("--download-window-seconds", type=float, default=DEFAULTS["download_window_seconds"])
    serve.add_argument(
        "--session-window-seconds",
        type=float,
        default=DEFAULTS["session_window_seconds"],
        help="lifetime of a resumable upload session (default a week)",
    )
    serve.add_argument(
        "--sessions-outlive-upload-window",
        default=DEFAULTS["sessions_outlive_upload_window"],
        action=argparse.BooleanOptionalAction,
        help="a resumable upload started within the upload window may send its "
        "chunks after it, for the session's lifetime (default: yes; "
        "--no-sessions-outlive-upload-window bounds the chunks too)",
    )
    serve.add_argument(
        "--pickup-seconds",
        type=float,
        default=DEFAULTS["pickup_seconds"],
        help="emulated seconds a job stays 'created' after its upload, during "
        "which a second simple PUT replaces the submission (default 0)",
    )
    serve.add_argument(
        "--ground-truth",
        action="append",
        metavar="PATH|TYPE=PATH",
        help="ground-truth CSV (id,reason[,action]) for every job type, or "
        "TYPE=PATH per type (repeatable); default: the built-in rule",
    )
    serve.add_argument(
        "--estimated-completion",
        default=DEFAULTS["estimated_completion"],
        action=argparse.BooleanOptionalAction,
        help="pre-release API mode: in_progress jobs carry estimated_completion "
        "(default: no, as the released API)",
    )
    serve.add_argument(
        "--unknown-job-status",
        type=int,
        choices=UNKNOWN_JOB_STATUSES,
        default=DEFAULTS["unknown_job_status"],
        help="answer to GET /2/compliance/jobs/:id of an unknown id: 200 with an "
        "errors array and no data (default, X's spec) or 404",
    )
    serve.add_argument(
        "--usage-capped",
        action="store_true",
        help="every API request answers 429 usage-capped (UsageCapExceeded)",
    )
    serve.add_argument("--no-gzip", action="store_true", help="never gzip API answers")
    serve.add_argument(
        "--no-gzip-results",
        action="store_true",
        help="store and serve results uncompressed (default: gzip-compressed, "
        "served with decompressive transcoding)",
    )
    serve.add_argument(
        "--faults",
        "--fault-profile",
        dest="fault_profile",
        choices=PROFILES,
        default=DEFAULTS["fault_profile"],
        help="'all': the recurring deterministic fault schedule of the faults "
        "module (408/429/503/drops on signed URLs, partial 308s, lost final "
        "answers, NoSuchKey after completion, 503 on lookups)",
    )
    serve.add_argument(
        "--fault",
        action="append",
        type=_fault,
        default=[],
        metavar="ENDPOINT:KIND[:ARG][xTIMES][@SKIP]",
        help="inject a fault (repeatable). KIND is status (ARG = HTTP status), "
        "delay (ARG = seconds), drop (ARG = bytes of the upload body read "
        "first), usage_cap (API endpoints), partial_chunk or "
        "lose_final_answer (upload_session) or no_such_key (download); "
        "SKIP matching requests go through first; "
        "e.g. get_job:status:503x2, upload:drop:300000, upload_session:delay:30@1, "
        "download:no_such_keyx3, upload_session:partial_chunk",
    )
    serve.add_argument(
        "--log-level", default="INFO", help="log level of the access log on stderr (default INFO)"
    )
    serve.set_defaults(func=_serve)

    gen = sub.add_parser(
        "generate",
        help="write a synthetic ID file and ground truth",
        description="Write COUNT random IDs, one per line, and optionally a "
        "ground-truth CSV flagging about 4%% of them.",
    )
    gen.add_argument("--count", type=int, required=True)
    gen.add_argument("--type", choices=JOB_TYPES, default="tweets", dest="job_type")
    gen.add_argument("--ids", required=True, help="the ID file to write")
    gen.add_argument("--truth", default=None, help="the ground-truth CSV to write")
    gen.add_argument("--seed", type=int, default=0)
    gen.set_defaults(func=_generate)
    return parser


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    emulator = XComplianceEmulator(
        token=args.token,
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        speed=args.speed,
        processing_seconds=args.processing_seconds,
        one_active_job=args.one_active_job,
        rate_limit=_rate_limit(args.rate_limit),
        rate_window_seconds=args.rate_window_seconds,
        upload_window_seconds=args.upload_window_seconds,
        download_window_seconds=args.download_window_seconds,
        ground_truth=_ground_truth(args.ground_truth),
        estimated_completion=args.estimated_completion,
        gzip=not args.no_gzip,
        session_window_seconds=args.session_window_seconds,
        sessions_outlive_upload_window=args.sessions_outlive_upload_window,
        public_host=args.public_host,
        unknown_job_status=args.unknown_job_status,
        usage_capped=args.usage_capped,
        fault_profile=args.fault_profile,
        pickup_seconds=args.pickup_seconds,
        gzip_results=not args.no_gzip_results,
    )
    with emulator:
        for fault in args.fault:
            emulator.inject_fault(**fault)
        print(f"X compliance emulator listening on {emulator.base_url}", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


def _generate(args: argparse.Namespace) -> int:
    counts = generate_dataset(args.count, args.job_type, args.ids, args.truth, seed=args.seed)
    print(json.dumps(counts), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv.insert(0, "serve")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
