"""Synthetic ID files and matching ground truth, for tests and benchmarks at any size.

IDs look like real ones: tweet IDs are snowflakes of 2018-07 to 2024-12 (19 digits); user IDs
mix early sequential IDs (1 to 10 digits) and snowflakes (17-19 digits). The ground-truth CSV
(see :mod:`.rules`) marks about ``flagged_fraction`` of the IDs with reasons valid for the job
type, some rows written twice (X sometimes reports an ID twice). Both files are written in
batches, so tens of millions of IDs need little memory. The ID file depends only on ``seed``
and ``count``, whether or not a truth file is written.
"""

from __future__ import annotations

import os
import random
from collections import Counter

from .rules import JOB_TYPES, REASONS, TWEPOCH_MS

__all__ = ["generate_dataset"]

_BATCH = 100_000
# Snowflake ranges: timestamps 2018-07-01 .. 2025-01-01 (tweets), 2013-01-01 .. 2025-01-01 (users)
_TWEET_LO = (1530403200000 - TWEPOCH_MS) << 22
_TWEET_HI = (1735689600000 - TWEPOCH_MS) << 22
_USER_SNOWFLAKE_LO = (1356998400000 - TWEPOCH_MS) << 22
_WEIGHTS = {
    "tweets": {"deleted": 45, "suspended": 20, "protected": 15, "bounced": 5, "scrub_geo": 15},
    "users": {"deleted": 45, "suspended": 25, "protected": 20, "deactivated": 10},
}


def _user_id(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.05:
        digits = rng.randint(1, 7)
        return rng.randrange(10 ** (digits - 1), 10**digits)
    if r < 0.40:
        return rng.randrange(10**7, 4_000_000_000)
    return rng.randrange(_USER_SNOWFLAKE_LO, _TWEET_HI)


def generate_dataset(
    count: int,
    job_type: str,
    ids_path: str | os.PathLike,
    truth_path: str | os.PathLike | None = None,
    seed: int = 0,
    *,
    flagged_fraction: float = 0.04,
    duplicate_fraction: float = 0.05,
) -> dict:
    """Write ``count`` random IDs of ``job_type`` to ``ids_path`` (one per line) and, when
    ``truth_path`` is given, a ground-truth CSV for them.

    Returns ``{"ids": count, "flagged_ids": ..., "truth_rows": ..., "by_reason": {reason:
    rows}}``; with every ID uploaded, the emulator's result file has ``truth_rows`` lines.
    """
    if job_type not in JOB_TYPES:
        raise ValueError(f"job_type must be one of {JOB_TYPES}")
    if count < 0:
        raise ValueError("count must not be negative")
    id_rng = random.Random(f"ids-{seed}")
    truth_rng = random.Random(f"truth-{seed}")
    reasons = list(_WEIGHTS[job_type])
    cumulative = []
    total_weight = 0
    for reason in reasons:
        total_weight += _WEIGHTS[job_type][reason]
        cumulative.append(total_weight)
    assert set(reasons) == set(REASONS[job_type])
    by_reason: Counter[str] = Counter()
    flagged = rows = 0
    if job_type == "tweets":
        lo, hi = _TWEET_LO, _TWEET_HI
        make = lambda: id_rng.randrange(lo, hi)
    else:
        make = lambda: _user_id(id_rng)
    truth_file = open(truth_path, "w", encoding="ascii", newline="\n") if truth_path else None
    try:
        with open(ids_path, "w", encoding="ascii", newline="\n") as ids_file:
            if truth_file is not None:
                truth_file.write(f"# ground truth for {count} {job_type} IDs, seed {seed}\n")
                truth_file.write("id,reason\n")
            left = count
            while left > 0:
                n = min(_BATCH, left)
                left -= n
                batch = [str(make()) for _ in range(n)]
                ids_file.write("\n".join(batch))
                ids_file.write("\n")
                if truth_file is None:
                    continue
                lines = []
                random_ = truth_rng.random
                for text in batch:
                    if random_() >= flagged_fraction:
                        continue
                    reason = truth_rng.choices(reasons, cum_weights=cumulative)[0]
                    line = f"{text},{reason}\n"
                    times = 2 if random_() < duplicate_fraction else 1
                    lines.append(line * times)
                    flagged += 1
                    rows += times
                    by_reason[reason] += times
                truth_file.writelines(lines)
    finally:
        if truth_file is not None:
            truth_file.close()
    return {
        "ids": count,
        "flagged_ids": flagged,
        "truth_rows": rows,
        "by_reason": dict(sorted(by_reason.items())),
    }
