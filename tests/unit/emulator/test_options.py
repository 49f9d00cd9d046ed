"""The emulator's options are defined once, as the fields of ``config.Config``: the constructor,
the Config and the ``serve`` command line agree on their names and defaults."""

from __future__ import annotations

import inspect
from dataclasses import fields

import pytest

from airflow_provider_xcompliance.emulator import XComplianceEmulator
from airflow_provider_xcompliance.emulator.__main__ import _options, build_parser
from airflow_provider_xcompliance.emulator.config import Config

TABLE = {option.name: option.default for option in fields(Config)}

# The constructor's keywords and defaults from before the table, pinned: tests, benchmarks, the
# demo and the docs call XComplianceEmulator(speed=300, ...) with these.
PINNED = {
    "token": "emulator-token",
    "host": "127.0.0.1",
    "port": 0,
    "data_dir": None,
    "speed": 1.0,
    "processing_seconds": 30.0,
    "one_active_job": "per_type",
    "rate_limit": 150,
    "rate_window_seconds": 900.0,
    "upload_window_seconds": 900.0,
    "download_window_seconds": 604800.0,
    "ground_truth": None,
    "estimated_completion": False,
    "gzip": True,
    "session_window_seconds": 604800.0,
    "sessions_outlive_upload_window": True,
    "public_host": None,
    "unknown_job_status": 200,
    "usage_capped": False,
    "fault_profile": "none",
    "pickup_seconds": 0.0,
    "gzip_results": True,
}

# Every serve flag that sets an option (each existing flag name), and what it sets.
FLAGS = [
    (["--host", "0.0.0.0"], {"host": "0.0.0.0"}),
    (["--port", "8080"], {"port": 8080}),
    (["--public-host", "emu:80"], {"public_host": "emu:80"}),
    (["--token", "t"], {"token": "t"}),
    (["--data-dir", "d"], {"data_dir": "d"}),
    (["--speed", "60"], {"speed": 60.0}),
    (["--processing-seconds", "5"], {"processing_seconds": 5.0}),
    (["--one-active-job", "global"], {"one_active_job": "global"}),
    (["--rate-limit", "5"], {"rate_limit": 5}),
    (
        ["--rate-limit", "5", "--rate-limit", "get_job=7"],
        {"rate_limit": {"create_job": 5, "list_jobs": 5, "get_job": 7}},
    ),
    (["--rate-window-seconds", "60"], {"rate_window_seconds": 60.0}),
    (["--upload-window-seconds", "61"], {"upload_window_seconds": 61.0}),
    (["--download-window-seconds", "62"], {"download_window_seconds": 62.0}),
    (["--session-window-seconds", "63"], {"session_window_seconds": 63.0}),
    (["--no-sessions-outlive-upload-window"], {"sessions_outlive_upload_window": False}),
    (["--pickup-seconds", "3"], {"pickup_seconds": 3.0}),
    (["--ground-truth", "t.csv"], {"ground_truth": "t.csv"}),
    (["--ground-truth", "users=u.csv"], {"ground_truth": {"users": "u.csv"}}),
    (["--estimated-completion"], {"estimated_completion": True}),
    (["--unknown-job-status", "404"], {"unknown_job_status": 404}),
    (["--usage-capped"], {"usage_capped": True}),
    (["--no-gzip"], {"gzip": False}),
    (["--no-gzip-results"], {"gzip_results": False}),
    (["--faults", "all"], {"fault_profile": "all"}),
    (["--fault-profile", "all"], {"fault_profile": "all"}),
]


def _config(emulator: XComplianceEmulator) -> dict:
    return {name: getattr(emulator.config, name) for name in TABLE}


def test_the_table_holds_the_constructors_options_and_defaults():
    assert TABLE == PINNED
    signature = inspect.signature(XComplianceEmulator)
    assert {name: p.default for name, p in signature.parameters.items()} == TABLE
    assert {p.kind for p in signature.parameters.values()} == {inspect.Parameter.KEYWORD_ONLY}


def test_the_constructor_takes_the_table_and_nothing_else():
    assert XComplianceEmulator().config == Config()
    assert _config(XComplianceEmulator()) == TABLE
    assert _config(XComplianceEmulator(**TABLE)) == TABLE
    with pytest.raises(TypeError, match="spead"):
        XComplianceEmulator(spead=300)
    with pytest.raises(TypeError):
        XComplianceEmulator("token")  # keyword arguments only


def test_the_constructor_gives_options_their_types():
    limits = {"get_job": 7}
    cfg = XComplianceEmulator(
        speed=300, pickup_seconds=1, gzip=0, unknown_job_status=404.0, rate_limit=limits
    ).config
    assert type(cfg.speed) is float and type(cfg.pickup_seconds) is float
    assert cfg.gzip is False and type(cfg.unknown_job_status) is int
    limits["get_job"] = 1
    assert cfg.rate_limits == {"create_job": 150, "list_jobs": 150, "get_job": 7}


def test_the_cli_has_a_flag_per_option_with_the_tables_defaults():
    args = build_parser().parse_args(["serve"])
    assert set(vars(args)) - {"command", "func", "fault", "log_level"} == set(TABLE)
    assert _options(args) == TABLE


def test_every_option_has_a_flag_case():
    assert set().union(*(expected for _, expected in FLAGS)) == set(TABLE)


@pytest.mark.parametrize("argv,expected", FLAGS, ids=[" ".join(argv) for argv, _ in FLAGS])
def test_each_flag_sets_its_option(argv, expected):
    options = _options(build_parser().parse_args(["serve", *argv]))
    assert options == {**TABLE, **expected}
    assert _config(XComplianceEmulator(**options)) == {**TABLE, **expected}
