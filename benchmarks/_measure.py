"""What the benchmarks share: their own RSS and CPU, other processes' CPU, sizes, best-of runs.

Each benchmark is run as a script (``python benchmarks/<name>.py``), so this module is imported
by its bare name; ``./dev bench`` runs only the files that do not start with ``_``.
"""

from __future__ import annotations

import argparse
import os
import re
import resource

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_of(pid: int | None) -> float:
    """CPU seconds (user + system, all threads) a process has used so far; 0 if unknown."""
    if not pid:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


def one_line(error: BaseException | str) -> str:
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    text = " ".join(str(text).split())
    return text[:300] + ("…" if len(text) > 300 else "")


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmM]?)\s*", text.replace("_", "").replace(",", ""))
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1M, 500k, 2000000)")
    return int(float(match[1]) * {"": 1, "k": 1_000, "m": 1_000_000}[match[2].lower()])


def best(runs: list[dict]) -> tuple[dict | None, str]:
    """The fastest successful run (peak RSS and growth: the largest over all runs), and a note
    on failed runs."""
    good = [run for run in runs if "error" not in run]
    failed = [run["error"] for run in runs if "error" in run]
    note = ""
    if failed and good:
        note = f"  ({len(failed)} of {len(runs)} runs failed: {failed[0]})"
    if not good:
        return None, failed[0] if failed else "not run"
    top = dict(min(good, key=lambda run: run["seconds"]))
    for key in ("peak_mib", "growth_mib"):
        values = [run[key] for run in good if run.get(key) is not None]
        top[key] = max(values) if values else None
    return top, note
