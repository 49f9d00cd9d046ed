"""How the emulator decides which uploaded IDs need action, and writes the result file.

X answers a compliance job with a JSON Lines file holding one object per ID that needs action
(an ID absent from the file is compliant). The emulator computes that file in one of two ways.

Ground truth (``ground_truth=`` a CSV file)
    Lines ``id,reason[,action]``; blank lines and lines starting with ``#`` are ignored, and so
    is a first line ``id,reason...`` (a header). An uploaded ID found in the file gets one result
    line per row for it, so a row given twice yields the ID twice in the results, as X sometimes
    does. Any reason is accepted (clients must cope with unknown ones). ``action`` defaults to
    ``delete`` for every reason, ``scrub_geo`` included (as in X's published samples); an
    explicit action column wins. Every other ID is
    compliant.

Deterministic rule (no ground truth) -- with ``n = int(id)`` and ``h = n % 1000`` (the last three
decimal digits of the ID):

    ======  ==============  ==================
    h       tweets          users
    ======  ==============  ==================
    0-19    deleted         deleted
    20-29   suspended       suspended
    30-39   protected       protected
    40-44   bounced         deactivated (40-49)
    45-54   scrub_geo       -
    other   compliant       compliant
    ======  ==============  ==================

so 5.5 % of random tweet IDs and 5 % of random user IDs need action. ``action`` is ``delete``
for every reason, ``scrub_geo`` included (X's published samples do the same: clients must
decide from ``reason``, not ``action``).

Quirks of the real files, reproduced deterministically from ``q = (n // 1000) % 100``
(applied to ground-truth lines too, except the duplication):

* ``q`` 0-9: the line has no ``redacted_at`` (X: "Not all compliance events will include the
  redacted_at field").
* ``q`` 10-19: both timestamps use the ``YYYY-MM-DDTHH:MM:SS.000+00:00`` form instead of
  ``YYYY-MM-DDTHH:MM:SS.000Z``.
* ``q`` 20-22 (rule only): the line is emitted twice in a row.

Timestamps, derived from the ID alone (whole seconds):

* ``created_at``: for ``n >= 3e16`` the snowflake time, ``((n >> 22) + 1288834974657) // 1000``;
  for smaller (pre-snowflake) IDs ``2006-03-21T00:00:00Z + (n % 145_000_000)`` seconds.
* ``redacted_at`` = ``created_at + (1 + (n // 7) % 365)`` days.

Lines come in upload order (an ID uploaded twice is answered twice); keys in the order
``id, action, created_at, redacted_at, reason``, compact JSON, ``id`` exactly as uploaded.

Upload content rule: every line must be a decimal ID of 1 to 19 digits; a trailing ``\\r`` and
blank lines are tolerated. Anything else fails the job with ``Invalid ID at line N: '...'``.

The file is processed in 1 MiB blocks with C-level helpers (``bytes.translate``, ``split``,
``itertools.compress``) so that tens of millions of IDs go through at a few million per second
with flat memory.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import itertools
import json
import operator
import os
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .timefmt import fast_iso

__all__ = [
    "JOB_TYPES",
    "REASONS",
    "default_action",
    "created_at_seconds",
    "redacted_at_seconds",
    "load_ground_truth",
    "ResultRules",
    "rules_for",
    "ProcessOutcome",
    "ProcessingCancelled",
    "process_file",
    "expected_results",
]

JOB_TYPES = ("tweets", "users")
REASONS: dict[str, tuple[str, ...]] = {
    "tweets": ("deleted", "suspended", "protected", "bounced", "scrub_geo"),
    "users": ("deleted", "suspended", "protected", "deactivated"),
}

# (first h, end h exclusive, reason) per job type; see the module docstring.
RULE_BANDS: dict[str, tuple[tuple[int, int, str], ...]] = {
    "tweets": (
        (0, 20, "deleted"),
        (20, 30, "suspended"),
        (30, 40, "protected"),
        (40, 45, "bounced"),
        (45, 55, "scrub_geo"),
    ),
    "users": (
        (0, 20, "deleted"),
        (20, 30, "suspended"),
        (30, 40, "protected"),
        (40, 50, "deactivated"),
    ),
}

TWEPOCH_MS = 1288834974657
SNOWFLAKE_MIN = 30_000_000_000_000_000
LEGACY_START = 1142899200  # 2006-03-21T00:00:00Z
LEGACY_SPAN = 145_000_000
DAY = 86400

BLOCK = 1 << 20
MAX_ID_DIGITS = 19
_DIGITS_CRLF = b"0123456789\r\n"
_last3 = operator.itemgetter(slice(-3, None))

GroundTruthSpec = str | os.PathLike | Mapping[str, str | os.PathLike] | None
Pair = tuple[str, str]  # (reason as JSON, action as JSON)


def default_action(reason: str) -> str:
    """The action X pairs with a reason when the ground truth does not say: ``delete`` for
    every reason, ``scrub_geo`` included."""
    return "delete"


def created_at_seconds(n: int) -> int:
    """When the tweet/user was created, derived from its ID (see the module docstring)."""
    if n >= SNOWFLAKE_MIN:
        return ((n >> 22) + TWEPOCH_MS) // 1000
    return LEGACY_START + n % LEGACY_SPAN


def redacted_at_seconds(n: int) -> int:
    """When the compliance event happened, derived from the ID."""
    return created_at_seconds(n) + DAY * (1 + (n // 7) % 365)


_pairs: dict[Pair, Pair] = {}
_singles: dict[Pair, tuple[Pair, ...]] = {}
_pairs_lock = threading.Lock()


def _pair(reason: str, action: str) -> Pair:
    """One shared tuple per (reason, action), JSON-encoded once; keeps big truth files small."""
    key = (json.dumps(reason), json.dumps(action))
    with _pairs_lock:
        pair = _pairs.get(key)
        if pair is None:
            pair = _pairs[key] = (sys.intern(key[0]), sys.intern(key[1]))
            _singles[pair] = (pair,)
        return pair


def _is_id(text: str) -> bool:
    return 0 < len(text) <= MAX_ID_DIGITS and text.isascii() and text.isdigit()


def load_ground_truth(path: str | os.PathLike) -> dict[bytes, tuple[Pair, ...]]:
    """Read a ground-truth CSV (cached by path, size and mtime) into a mapping from the ID's
    canonical decimal form (bytes, no leading zeros) to its (reason, action) pairs; raises
    ``ValueError`` with the line number on a malformed row."""
    p = Path(path)
    st = p.stat()
    return _load_ground_truth_cached(str(p.resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)
def _load_ground_truth_cached(path: str, _mtime_ns: int, _size: int) -> dict[bytes, tuple[Pair, ...]]:
    truth: dict[bytes, tuple[Pair, ...]] = {}
    seen_row = False
    with open(path, encoding="utf-8", newline="") as f:
        for lineno, row in enumerate(csv.reader(f), 1):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            first = row[0].strip()
            if first.startswith("#"):
                continue
            if not seen_row and first.lower() == "id":
                seen_row = True
                continue
            seen_row = True
            if not _is_id(first):
                raise ValueError(f"{path}:{lineno}: not an ID of 1-19 digits: {first[:40]!r}")
            reason = row[1].strip() if len(row) > 1 else ""
            if not reason:
                raise ValueError(f"{path}:{lineno}: missing reason")
            action = row[2].strip() if len(row) > 2 else ""
            pair = _pair(reason, action or default_action(reason))
            key = str(int(first)).encode()
            old = truth.get(key)
            truth[key] = _singles[pair] if old is None else old + (pair,)
    return truth


class ResultRules:
    """Decides the result lines for the IDs of one job type (rule or ground truth)."""

    def __init__(self, job_type: str, truth: dict[bytes, tuple[Pair, ...]] | None = None):
        if job_type not in JOB_TYPES:
            raise ValueError(f"job type must be one of {JOB_TYPES}, not {job_type!r}")
        self.job_type = job_type
        self.truth = truth
        table: list[tuple[Pair, ...]] = [()] * 1000
        for lo, hi, reason in RULE_BANDS[job_type]:
            events = (_pair(reason, default_action(reason)),)
            for h in range(lo, hi):
                table[h] = events
        self._table = table
        # The hit lookup on the last (up to) three digits of the line, without int().
        self._hits_by_tail = {
            str(v).zfill(width).encode(): True for width in (1, 2, 3) for v in range(10**width) if table[v]
        }

    def events(self, n: int) -> tuple[Pair, ...]:
        """The (reason, action) pairs for ID ``n``: empty when compliant."""
        if self.truth is not None:
            return self.truth.get(str(n).encode(), ())
        events = self._table[n % 1000]
        if events and 20 <= (n // 1000) % 100 < 23:
            return events * 2
        return events

    @staticmethod
    def format(id_text: str, n: int, pair: Pair) -> str:
        """One result line (with its newline) for ID ``n`` uploaded as ``id_text``."""
        q = (n // 1000) % 100
        suffix = ".000+00:00" if 10 <= q < 20 else ".000Z"
        created = created_at_seconds(n)
        if q < 10:
            return '{"id":"%s","action":%s,"created_at":"%s","reason":%s}\n' % (
                id_text,
                pair[1],
                fast_iso(created, suffix),
                pair[0],
            )
        redacted = created + DAY * (1 + (n // 7) % 365)
        return '{"id":"%s","action":%s,"created_at":"%s","redacted_at":"%s","reason":%s}\n' % (
            id_text,
            pair[1],
            fast_iso(created, suffix),
            fast_iso(redacted, suffix),
            pair[0],
        )

    def select(self, lines: list[bytes], leading_zeros: bool = True) -> Iterator[bytes]:
        """The lines (valid IDs or blank, no ``\\r``) that need action, in order, at C speed.
        ``leading_zeros=False`` promises that no line starts with ``0`` (the common case)."""
        if self.truth is not None:
            keys = lines
            if leading_zeros:
                keys = [line.lstrip(b"0") or line[:1] for line in lines]
            return itertools.compress(lines, map(self.truth.get, keys))
        return itertools.compress(lines, map(self._hits_by_tail.get, map(_last3, lines)))


def _truth_path(ground_truth: GroundTruthSpec, job_type: str):
    if ground_truth is None:
        return None
    if isinstance(ground_truth, Mapping):
        return ground_truth.get(job_type)
    return ground_truth


def rules_for(job_type: str, ground_truth: GroundTruthSpec = None) -> ResultRules:
    """The rules for a job type: ``ground_truth`` is None, one CSV path for every job type, or
    a mapping job type -> CSV path (types missing from it use the rule)."""
    path = _truth_path(ground_truth, job_type)
    return ResultRules(job_type, load_ground_truth(path) if path is not None else None)


class ProcessingCancelled(Exception):
    """The emulator stopped while a file was being processed."""


class CancelFlag(Protocol):
    """What ``process_file`` polls to stop early: a ``threading.Event``, or anything with ``is_set``."""

    def is_set(self) -> bool: ...


@dataclass
class ProcessOutcome:
    """What processing an uploaded ID file gave: an error, or the counts of IDs and results."""

    error: str | None  # the job's ``error`` when the upload is invalid
    ids: int = 0  # non-blank lines read
    results: int = 0  # result lines written
    size: int = 0  # bytes of the result file
    md5: bytes = b""  # digest of the result file


def _invalid_line_message(lineno: int, raw: bytes) -> str:
    text = raw.rstrip(b"\r").decode("utf-8", "replace")
    if len(text) > 40:
        text = text[:40] + "..."
    return f"Invalid ID at line {lineno}: {text!r}"


def _find_invalid(chunk: bytes, first_lineno: int) -> str | None:
    """Slow exact scan of a block that failed the fast check: the message for its first bad line."""
    for i, line in enumerate(chunk.split(b"\n")):
        bare = line[:-1] if line.endswith(b"\r") else line
        if bare and not (len(bare) <= MAX_ID_DIGITS and bare.isdigit()):
            return _invalid_line_message(first_lineno + i, line)
    return None


def _fast_lines(chunk: bytes) -> list[bytes] | None:
    """The lines of a block without ``\\r``, or None when some line may be invalid."""
    if chunk.translate(None, _DIGITS_CRLF):
        return None
    if b"\r" in chunk:
        if chunk.count(b"\r") != chunk.count(b"\r\n") + chunk.endswith(b"\r"):
            return None
        chunk = chunk.replace(b"\r", b"")
    lines = chunk.split(b"\n")
    if max(map(len, lines)) > MAX_ID_DIGITS:
        return None
    return lines


def process_file(
    src: Path, dst: Path, rules: ResultRules, cancel: CancelFlag | None = None
) -> ProcessOutcome:
    """Validate the uploaded ID file ``src`` and write the result file ``dst`` (atomically).

    Returns an outcome with ``error`` set (and no ``dst``) when a line is not an ID.
    """
    tmp = dst.with_name(dst.name + ".part")
    digest = hashlib.md5()
    ids = results = size = 0
    lineno = 1  # number of the first line of the next block
    carry = b""
    try:
        with open(src, "rb") as f, open(tmp, "wb") as out:
            while True:
                if cancel is not None and cancel.is_set():
                    raise ProcessingCancelled()
                block = f.read(BLOCK)
                last = not block
                if last:
                    if not carry:
                        break
                    chunk, carry = carry, b""
                else:
                    data = carry + block if carry else block
                    cut = data.rfind(b"\n")
                    if cut < 0:
                        carry = data
                        if len(carry) > 64:  # no ID line is that long
                            return ProcessOutcome(_invalid_line_message(lineno, carry[:64]))
                        continue
                    chunk, carry = data[:cut], data[cut + 1 :]
                lines = _fast_lines(chunk)
                if lines is None:
                    message = _find_invalid(chunk, lineno)
                    if message is not None:
                        return ProcessOutcome(message)
                    lines = chunk.replace(b"\r", b"").split(b"\n")  # pragma: no cover
                ids += len(lines) - lines.count(b"")
                lineno += len(lines)
                parts = []
                fmt = rules.format
                events = rules.events
                zeros = chunk.startswith(b"0") or b"\n0" in chunk
                for line in rules.select(lines, zeros):
                    n = int(line)
                    text = line.decode("ascii")
                    for pair in events(n):
                        parts.append(fmt(text, n, pair))
                if parts:
                    encoded = "".join(parts).encode("ascii")
                    out.write(encoded)
                    digest.update(encoded)
                    size += len(encoded)
                    results += len(parts)
                if last:
                    break
        os.replace(tmp, dst)
        return ProcessOutcome(None, ids, results, size, digest.digest())
    finally:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass


def expected_results(
    ids: Iterable[str], job_type: str, ground_truth: GroundTruthSpec = None
) -> Iterator[dict]:
    """The result objects the emulator produces for ``ids`` (in upload order), one dict per line
    of the result file. Blank entries are skipped like blank upload lines; anything else that is
    not an ID of 1-19 digits raises ``ValueError``."""
    rules = rules_for(job_type, ground_truth)
    for index, raw in enumerate(ids, 1):
        text = raw.decode("ascii", "replace") if isinstance(raw, (bytes, bytearray)) else str(raw)
        text = text.strip()
        if not text:
            continue
        if not _is_id(text):
            raise ValueError(f"entry {index} is not an ID of 1-19 digits: {text[:40]!r}")
        n = int(text)
        for pair in rules.events(n):
            yield json.loads(rules.format(text, n, pair))
