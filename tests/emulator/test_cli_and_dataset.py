"""The command line (serve and generate) and the synthetic dataset generator."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from airflow_provider_xcompliance.emulator import XComplianceEmulator, generate_dataset
from airflow_provider_xcompliance.emulator.__main__ import main
from airflow_provider_xcompliance.emulator.rules import REASONS

from .helpers import api_session, create_job, jsonl, put_ids, wait_status

ROOT = Path(__file__).resolve().parents[2]


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> tuple[int, str]:
    """Stop the CLI with ``sig`` (killing it after 20 s); its exit code and stderr."""
    proc.send_signal(sig)
    try:
        code = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    proc.stdout.close()
    stderr = proc.stderr.read()
    proc.stderr.close()
    return code, stderr


def _start_cli(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_xcompliance.emulator", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=60)
    except queue.Empty:
        proc.kill()
        raise AssertionError("the emulator printed nothing") from None
    return proc, line


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_serve(tmp_path, sig):
    proc, line = _start_cli(
        "--port",
        "0",
        "--token",
        "cli-token",
        "--speed",
        "1000",
        "--processing-seconds",
        "10",
        "--data-dir",
        str(tmp_path / "data"),
        "--fault",
        "get_job:status:503x1",
        "--rate-limit",
        "get_job=7",
        "--log-level",
        "WARNING",
    )
    try:
        assert line.startswith("X compliance emulator listening on http://127.0.0.1:")
        base = line.strip().rsplit(" ", 1)[1]
        s = requests.Session()
        s.headers["Authorization"] = "Bearer cli-token"
        r = s.post(f"{base}/2/compliance/jobs", json={"type": "tweets"})
        assert r.status_code == 200
        job_id = r.json()["data"]["id"]
        r = s.get(f"{base}/2/compliance/jobs/{job_id}")
        assert r.status_code == 503  # the injected fault
        r = s.get(f"{base}/2/compliance/jobs/{job_id}")
        assert r.status_code == 200 and r.headers["x-rate-limit-limit"] == "7"
        assert (tmp_path / "data" / job_id).is_dir()  # kept data dir
    finally:
        code, stderr = _stop(proc, sig)
    assert code == 0, stderr
    assert "Traceback" not in stderr


def test_cli_explicit_serve_and_bad_fault():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "airflow_provider_xcompliance.emulator",
            "serve",
            "--fault",
            "nowhere:status:500",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 2
    assert "nowhere" in proc.stderr


def test_cli_generate(tmp_path, capsys):
    ids, truth = tmp_path / "ids.txt", tmp_path / "truth.csv"
    assert (
        main(
            [
                "generate",
                "--count",
                "2000",
                "--type",
                "users",
                "--ids",
                str(ids),
                "--truth",
                str(truth),
                "--seed",
                "5",
            ]
        )
        == 0
    )
    counts = json.loads(capsys.readouterr().out)
    assert counts["ids"] == 2000
    assert len(ids.read_text().splitlines()) == 2000
    assert counts["truth_rows"] == sum(counts["by_reason"].values()) > 0


def test_generate_dataset_tweets(tmp_path):
    ids, truth = tmp_path / "ids.txt", tmp_path / "truth.csv"
    counts = generate_dataset(50_000, "tweets", ids, truth, seed=1)
    lines = ids.read_text().splitlines()
    assert len(lines) == 50_000 == counts["ids"]
    assert all(len(x) == 19 and x.isdigit() for x in lines)
    assert len(set(lines)) > 49_990
    rows = [r for r in truth.read_text().splitlines() if r and not r.startswith("#")]
    assert rows[0] == "id,reason"
    rows = [r.split(",") for r in rows[1:]]
    assert len(rows) == counts["truth_rows"]
    assert {reason for _, reason in rows} == set(REASONS["tweets"])
    assert set(counts["by_reason"]) == set(REASONS["tweets"])
    assert 0.03 < counts["flagged_ids"] / 50_000 < 0.05
    assert counts["truth_rows"] > counts["flagged_ids"]  # some rows twice
    id_set = set(lines)
    assert all(i in id_set for i, _ in rows)
    # deterministic, and the ID file does not depend on writing the truth
    again = tmp_path / "again.txt"
    assert generate_dataset(50_000, "tweets", again, None, seed=1)["truth_rows"] == 0
    assert again.read_text() == ids.read_text()
    other = tmp_path / "other.txt"
    generate_dataset(1000, "tweets", other, None, seed=2)
    assert other.read_text().splitlines() != lines[:1000]


def test_generate_dataset_users(tmp_path):
    ids = tmp_path / "ids.txt"
    truth = tmp_path / "truth.csv"
    counts = generate_dataset(20_000, "users", ids, truth, seed=3)
    lengths = {len(x) for x in ids.read_text().splitlines()}
    assert min(lengths) <= 7 and max(lengths) == 19
    assert all(1 <= n <= 19 for n in lengths)
    assert set(counts["by_reason"]) <= set(REASONS["users"])
    with pytest.raises(ValueError):
        generate_dataset(10, "videos", tmp_path / "x.txt")


def test_generated_dataset_end_to_end(make_emulator, tmp_path):
    ids, truth = tmp_path / "ids.txt", tmp_path / "truth.csv"
    counts = generate_dataset(30_000, "tweets", ids, truth, seed=9)
    emu: XComplianceEmulator = make_emulator(
        speed=1000, ground_truth=truth, upload_window_seconds=100_000, processing_seconds=10
    )
    s = api_session(emu)
    job = create_job(s, emu)
    with open(ids, "rb") as f:
        assert put_ids(job["upload_url"], f).status_code == 200
    done = wait_status(s, emu, job["id"])
    got = jsonl(requests.get(done["download_url"]).text)
    assert len(got) == counts["truth_rows"]
    by_reason: dict[str, int] = {}
    for g in got:
        by_reason[g["reason"]] = by_reason.get(g["reason"], 0) + 1
    assert by_reason == counts["by_reason"]


def test_cli_new_switches(tmp_path):
    proc, line = _start_cli(
        "--faults",
        "all",
        "--unknown-job-status",
        "404",
        "--estimated-completion",
        "--processing-seconds",
        "600",
        "--no-sessions-outlive-upload-window",
        "--pickup-seconds",
        "0",
        "--fault",
        "get_job:usage_cap",
        "--log-level",
        "WARNING",
    )
    try:
        base = line.strip().rsplit(" ", 1)[1]
        s = requests.Session()
        s.headers["Authorization"] = "Bearer emulator-token"
        job = s.post(f"{base}/2/compliance/jobs", json={"type": "tweets"}).json()["data"]
        r = s.get(f"{base}/2/compliance/jobs/{job['id']}")
        assert r.status_code == 429 and r.json()["type"].endswith("/usage-capped")
        r = put_ids(job["upload_url"], "1\n")
        assert r.status_code == 408  # the "all" profile: first upload request
        assert put_ids(job["upload_url"], "1\n").status_code == 200
        r = s.get(f"{base}/2/compliance/jobs/{job['id']}")
        assert r.status_code == 200
        assert r.json()["data"]["status"] == "in_progress"
        assert "estimated_completion" in r.json()["data"]
        r = s.get(f"{base}/2/compliance/jobs/1")
        assert r.status_code == 404 and r.json()["errors"][0]["resource_id"] == "1"
    finally:
        code, stderr = _stop(proc)
    assert code == 0, stderr
    assert "Traceback" not in stderr


def test_cli_usage_capped_and_defaults():
    proc, line = _start_cli("--usage-capped", "--log-level", "WARNING")
    try:
        base = line.strip().rsplit(" ", 1)[1]
        r = requests.get(
            f"{base}/2/compliance/jobs?type=tweets", headers={"Authorization": "Bearer emulator-token"}
        )
        assert r.status_code == 429
        assert r.json() == {
            "title": "UsageCapExceeded",
            "detail": "Usage cap exceeded: Monthly product cap",
            "type": "https://api.x.com/2/problems/usage-capped",
            "period": "Monthly",
            "scope": "Product",
            "status": 429,
        }
    finally:
        code, stderr = _stop(proc)
    assert code == 0, stderr


def test_cli_parser_defaults():
    from airflow_provider_xcompliance.emulator.__main__ import build_parser

    args = build_parser().parse_args(["serve"])
    assert args.estimated_completion is False
    assert args.sessions_outlive_upload_window is True
    assert args.unknown_job_status == 200
    assert args.usage_capped is False
    assert args.fault_profile == "none"
    assert args.gzip_results is True  # --no-gzip-results not given
    assert build_parser().parse_args(["serve", "--fault-profile", "all"]).fault_profile == "all"
