"""Throughput and memory of the streaming paths, as figures (nothing is asserted).

    .venv/bin/python benchmarks/streaming.py [--sizes 1000000 4000000]

For each ID-file size it measures, each in a fresh process so that peak memory is its own:
  read      reading the file in 1 MiB blocks and nothing else (the baseline)
  validate  reading + validating/normalising every line (IdNormalizer)
  upload    XComplianceHook.upload_ids to the emulator (simple PUT; the emulator runs in its own process)
  resumable the same through the resumable protocol (8 MiB chunks)
  download  XComplianceHook.download_results of a job whose every ID is flagged (worst case),
            written to a local file with the summary computed
and prints IDs/s, MiB/s, the ratio to the baseline, and how much the process's peak RSS grew
during the operation. Flat memory shows as the same growth for every size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOKEN = "benchmark-token"


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(operation: str, ids_file: Path, count: int) -> dict:
    """Runs in the child process: one operation, timed, with its peak-RSS growth."""
    from airflow_provider_xcompliance.hooks.compliance import XComplianceHook
    from airflow_provider_xcompliance.ids import normalized_blocks
    from airflow_provider_xcompliance.storage import read_blocks, to_path

    with tempfile.TemporaryDirectory() as work:
        truth = None
        if operation == "download":  # a ground truth flagging every ID: the largest results file
            truth = Path(work) / "truth.csv"
            with ids_file.open() as ids, truth.open("w") as out:
                for line in ids:
                    out.write(f"{line.strip()},deleted\n")
        # The emulator runs in a process of its own, so that only the client is measured here.
        emulator = subprocess.Popen(
            [sys.executable, "-m", "airflow_provider_xcompliance.emulator", "serve", "--port", "0", "--token", TOKEN,
             "--speed", "60", "--processing-seconds", "1", "--data-dir", str(Path(work) / "emu"),
             *(["--ground-truth", str(truth)] if truth else [])],
            stdout=subprocess.PIPE, text=True,
        )
        try:
            base_url = emulator.stdout.readline().split()[-1]
            os.environ["AIRFLOW_CONN_X_COMPLIANCE_DEFAULT"] = json.dumps(
                {"conn_type": "x_compliance", "host": base_url, "password": TOKEN, "extra": {"timeout": 300}}
            )
            hook = XComplianceHook()
            job = None
            if operation in ("upload", "resumable", "download"):
                job = hook.create_job("tweets", resumable=operation == "resumable")
            if operation == "download":
                hook.upload_ids(job, ids_file)
                while hook.get_job(job.id).status != "complete":
                    time.sleep(0.2)
            for _ in read_blocks(to_path(ids_file), 16):  # one-time lazy imports (lineage) out of the timing
                break
            nbytes = ids_file.stat().st_size
            base_rss = rss_mib()
            started = time.perf_counter()
            if operation == "read":
                for _ in read_blocks(to_path(ids_file)):
                    pass
            elif operation == "validate":
                for _ in normalized_blocks(read_blocks(to_path(ids_file)), str(ids_file)):
                    pass
            elif operation in ("upload", "resumable"):
                hook.upload_ids(job, ids_file)
            elif operation == "download":
                summary = hook.download_results(job.id, Path(work) / "results.jsonl")
                nbytes = summary["bytes"]
                assert summary["lines"] == count, summary
            seconds = time.perf_counter() - started
            return {"seconds": seconds, "bytes": nbytes, "rss_growth_mib": max(0.0, peak_mib() - base_rss)}
        finally:
            emulator.terminate()
            emulator.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--child", nargs=3, metavar=("OPERATION", "FILE", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        operation, path, count = args.child
        print(json.dumps(measure(operation, Path(path), int(count))))
        return

    from airflow_provider_xcompliance.emulator import generate_dataset

    operations = ["read", "validate", "upload", "resumable", "download"]
    print(f"{'IDs':>11} {'operation':<10} {'seconds':>8} {'M IDs/s':>8} {'MiB/s':>8} {'vs read':>8} {'RSS growth MiB':>15}")
    with tempfile.TemporaryDirectory() as work:
        for count in args.sizes:
            ids_file = Path(work) / f"ids-{count}.txt"
            generate_dataset(count, "tweets", ids_file, seed=1)
            baseline = None
            for operation in operations:
                child = subprocess.run(
                    [sys.executable, __file__, "--child", operation, str(ids_file), str(count)],
                    capture_output=True, text=True, check=True,
                    env={**os.environ, "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING"},
                )
                figures = json.loads(child.stdout.strip().splitlines()[-1])
                seconds = figures["seconds"]
                baseline = baseline or seconds
                print(f"{count:>11,} {operation:<10} {seconds:>8.2f} {count / seconds / 1e6:>8.2f} "
                      f"{figures['bytes'] / seconds / 2**20:>8.1f} {seconds / baseline:>7.1f}x "
                      f"{figures['rss_growth_mib']:>15.1f}")


if __name__ == "__main__":
    main()
