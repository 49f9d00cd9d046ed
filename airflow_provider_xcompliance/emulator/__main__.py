"""Command line: run the emulator (``serve``, the default) or write a dataset (``generate``).

    python -m airflow_provider_xcompliance.emulator [serve] --port 8080 --speed 60
    python -m airflow_provider_xcompliance.emulator generate --count 1000000 --type tweets \\
        --ids ids.txt --truth truth.csv

``serve`` prints ``X compliance emulator listening on http://HOST:PORT`` once ready and runs
until SIGINT or SIGTERM. Its flags are the emulator's options, made from their one definition
(the fields of ``config.Config``: name, default, help and argparse settings), plus ``--fault``
and ``--log-level``.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from dataclasses import fields
from typing import Any

from .config import Config
from .dataset import generate_dataset
from .emulator import XComplianceEmulator
from .faults import parse_fault_spec
from .rules import JOB_TYPES

COMMANDS = ("serve", "generate")


def _add_options(serve: argparse.ArgumentParser) -> None:
    """A flag per emulator option, as its field of ``Config`` describes it."""
    for option in fields(Config):
        meta = option.metadata
        serve.add_argument(
            *(meta["flags"] or ["--" + option.name.replace("_", "-")]),
            dest=option.name,
            # a repeatable flag collects its strings (see _options)
            default=None if meta["from_cli"] else option.default,
            help=meta["help"],
            **meta["argparse"],
        )


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The emulator's options as the flags of ``_add_options`` gave them."""
    options = {}
    for option in fields(Config):
        value = getattr(args, option.name)
        from_cli = option.metadata["from_cli"]
        if from_cli is not None:
            value = option.default if value is None else from_cli(value)
        options[option.name] = value
    return options


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
    _add_options(serve)
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
    emulator = XComplianceEmulator(**_options(args))
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
