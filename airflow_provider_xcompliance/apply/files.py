"""Applying results to a data set of JSON Lines or Parquet objects, in any object store.

The flagged IDs are read once into memory; the objects are then streamed twice, block by block
(JSON Lines) or row group by row group (Parquet), so memory follows the flagged IDs and never the
data set:

1. a read-only scan counts what each object would lose, so that ``max_delete_fraction`` and
   ``dry_run`` can answer before anything is written;
2. only the objects that change are rewritten, each atomically (complete or not at all), with
   every untouched JSON line written back byte for byte.

A second run over the same results changes nothing: deleted records are gone, and a record whose
geo fields are all null is not counted as a change.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from functools import partial

from airflow.sdk import ObjectStoragePath

from airflow_provider_xcompliance.apply.audit import AuditIdentity, audit_folder, write_audit_objects
from airflow_provider_xcompliance.apply.flagged import read_flagged
from airflow_provider_xcompliance.apply.jsonl import jsonl_object
from airflow_provider_xcompliance.apply.parquet import ParquetMatcher, parquet_object, pyarrow_modules
from airflow_provider_xcompliance.apply.partitions import parse_created_at, partitioner
from airflow_provider_xcompliance.apply.plan import Flagged, ObjectChanges, ObjectProcess, Plan
from airflow_provider_xcompliance.apply.report import add_counts, new_report, utc_now_text
from airflow_provider_xcompliance.apply.rules import (
    DELETE,
    KEEP,
    SCRUB_GEO,
    ChangeRules,
    check_delete_fraction,
)
from airflow_provider_xcompliance.exceptions import ApplyConfigError
from airflow_provider_xcompliance.object_storage import LOCAL_PROTOCOLS, Location, atomic_writer, to_path
from airflow_provider_xcompliance.reports import ApplyReport
from airflow_provider_xcompliance.utils.logs import Log

log = logging.getLogger(__name__)

FORMATS = {"jsonl": (".jsonl", ".json"), "parquet": (".parquet",)}


def apply_to_files(
    results_path: Location,
    rules: ChangeRules,
    data_path: Location,
    *,
    format: str = "jsonl",
    id_field: str = "id",
    author_id_field: str | None = None,
    geo_fields: Sequence[str] = (),
    partition_template: str | None = None,
    audit: AuditIdentity | None = None,
    audit_path: Location | None = None,
    job_id: str | None = None,
    run_id: str | None = None,
    max_delete_fraction: float | None = None,
    dry_run: bool = False,
    log: Log = log,
) -> ApplyReport:
    """Delete and scrub the flagged records of the JSON Lines or Parquet objects under ``data_path``.

    ``data_path`` is one object or a folder (every ``.jsonl``/``.json`` or ``.parquet`` object
    under it; names starting with ``.`` or ``_`` are skipped). Tweets jobs match ``id_field``;
    users jobs delete every record whose ``author_id_field`` is a flagged user.
    ``partition_template`` (``"date={created_at:%Y-%m-%d}"``) limits a tweets job to the folders
    of the flagged tweets' creation dates (UTC). The results are read whole before any object is
    touched, so a broken results line changes nothing; memory holds the flagged IDs (about 100
    bytes each) and one block or row group, however large the data set.

    A failure stops at an object boundary: each object is old or new, never half written. The
    audit (with both ``audit`` and ``audit_path``) is one JSON Lines object written after the
    rewrites, or after a failed one for the objects already rewritten; ``max_delete_fraction``
    counts the records of the objects read (the flagged partitions only, when pruning).
    """
    started = time.monotonic()
    data = to_path(data_path)
    target = str(data)
    report = new_report(rules, job_id, results_path, target, dry_run)
    plan = _plan(rules, format, id_field, author_id_field, geo_fields)
    audit_dir = audit_folder(audit, audit_path, data)
    partition_of = None
    if partition_template is not None and plan.by_author:
        log.info("partition_template ignored: a users job deletes a user's tweets in every partition")
    elif partition_template is not None:
        partition_of = partitioner(partition_template)

    flagged = _read_results(results_path, rules, partition_of, log)
    report["result_lines"] = flagged.lines
    report["kept"] = dict(sorted(flagged.kept.items()))
    plan = replace(plan, flagged=flagged.changes)
    if not plan.geo_fields and any(change == SCRUB_GEO for change, _ in flagged.changes.values()):
        raise ApplyConfigError(
            "The results ask to remove geo data (scrub_geo) but geo_fields is empty: name the "
            "geo fields, or pass overrides={'scrub_geo': 'keep'} if the data set holds none. "
            "Nothing was changed"
        )
    log.info(
        "Read %d result lines from %s: %d IDs to act on; overrides keep %d",
        flagged.lines,
        results_path,
        len(flagged.changes),
        sum(flagged.kept.values()),
    )

    objects = data_objects(data, format, flagged.partitions, log) if flagged.changes else []
    process: ObjectProcess = jsonl_object
    if format == "parquet":
        process = partial(parquet_object, matcher=ParquetMatcher(plan))  # value sets built once

    # Pass 1: read-only, so that the guard and dry_run answer before anything is written.
    scanned: list[tuple[ObjectStoragePath, ObjectChanges]] = []
    total = deleting = 0
    for path in objects:
        changes = ObjectChanges()
        process(path, plan, changes, None)
        total += changes.records
        deleting += sum(changes.deleted.values())
        if changes.count:
            scanned.append((path, changes))
    log.info(
        "Scanned %d objects, %d records: %d objects to rewrite (%d records to delete, %d to scrub)",
        len(objects),
        total,
        len(scanned),
        deleting,
        sum(sum(c.updated.values()) for _, c in scanned),
    )
    check_delete_fraction(max_delete_fraction, target, deleting, total)

    if dry_run:
        for path, changes in scanned:
            _add_to_report(report, path, changes)
        log.info("Dry run: nothing was written")
    else:
        _rewrite(scanned, plan, process, report, audit, audit_dir, job_id, run_id, log)
    if not report["changed"]:
        log.info("Nothing to change in %s (the results may have been applied already)", target)
    report["seconds"] = round(time.monotonic() - started, 3)
    return report


# --- configuration and results --------------------------------------------------------------


def _plan(
    rules: ChangeRules, format: str, id_field: str, author_id_field: str | None, geo_fields: Sequence[str]
) -> Plan:
    """Check the options before anything is read."""
    if format not in FORMATS:
        raise ApplyConfigError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
    if format == "parquet":
        pyarrow_modules()  # a missing extra fails before the results are read
    by_author = rules.job_type == "users"
    match_field = id_field
    if by_author:
        if not author_id_field:
            raise ApplyConfigError(
                "A users job deletes every tweet of a flagged user: author_id_field must name the "
                "field that holds a tweet's author ID"
            )
        match_field = author_id_field
    geo = () if by_author else tuple(geo_fields)
    names = [match_field, *geo] + ([id_field] if by_author else [])
    if not all(isinstance(name, str) and name for name in names) or len(set(names)) != len(names):
        raise ApplyConfigError(
            f"id_field, author_id_field and geo_fields must be distinct names, not {names}"
        )
    return Plan({}, match_field, id_field, geo, by_author)


def _read_results(
    results_path: Location,
    rules: ChangeRules,
    partition_of: Callable[[datetime], str] | None,
    log: Log,
) -> Flagged:
    """All flagged IDs, read before any object is: a broken results line fails here. With a
    template, also the partitions they fall in (None when a record's date is unknown)."""
    flagged = Flagged(partitions=set() if partition_of is not None else None)
    undated = 0
    for record in read_flagged(results_path, rules):
        flagged.lines += 1
        if record.change == KEEP:
            flagged.kept[record.reason] += 1
            continue
        flagged.add(int(record.id), record.change, record.reason)
        if partition_of is None:
            continue
        created = parse_created_at(record.created_at)
        if created is None:
            undated += 1
        elif flagged.partitions is not None:
            flagged.partitions.add(partition_of(created))
    if undated:
        flagged.partitions = None
        log.info(
            "Reading every object, not only the template's partitions: %d flagged records have "
            "no readable created_at, so their partitions are unknown",
            undated,
        )
    return flagged


# --- listing ---------------------------------------------------------------------------------


def data_objects(
    data: ObjectStoragePath, format: str, partitions: set[str] | None, log: Log
) -> list[ObjectStoragePath]:
    """The objects to read: ``data`` itself, or the data files under it (or under the flagged
    partitions only), hidden names skipped, in a stable order."""
    fs, base = data.fs, data.path.rstrip("/")
    fs.invalidate_cache(base)
    if fs.isfile(base):
        if partitions is not None:
            log.info("partition_template ignored: data_path %s is a single object", data)
        return [data]
    if not fs.isdir(base):
        raise ApplyConfigError(f"data_path {data} holds no object and no folder")
    folders = [""] if partitions is None else sorted(partitions)
    if partitions is not None:
        log.info("Partition pruning: reading %d partitions of %s", len(folders), data)
    suffixes = FORMATS[format]
    found: list[str] = []
    ignored = 0
    for folder in folders:
        root = f"{base}/{folder}".rstrip("/")
        if folder and not fs.isdir(root):
            continue  # no data for those dates
        for key in fs.find(root):
            relative = key[len(base) :].lstrip("/")
            if not key.startswith(f"{root}/") or any(part[:1] in "._" for part in relative.split("/")):
                continue
            if relative.lower().endswith(suffixes):
                found.append(relative)
            else:
                ignored += 1
    if ignored:
        log.info(
            "Ignored %d objects under %s whose names do not end in %s", ignored, data, "/".join(suffixes)
        )
    return [data / relative for relative in sorted(found)]


# --- rewriting -------------------------------------------------------------------------------


def _rewrite(
    scanned: list[tuple[ObjectStoragePath, ObjectChanges]],
    plan: Plan,
    process: ObjectProcess,
    report: ApplyReport,
    audit: AuditIdentity | None,
    audit_dir: ObjectStoragePath | None,
    job_id: str | None,
    run_id: str | None,
    log: Log,
) -> None:
    """Rewrite each changed object atomically. The audit is written after the rewrites, and
    also after a failed one, for the objects already rewritten: their records are gone, and a
    rerun would no longer see them."""
    done: list[tuple[ObjectStoragePath, ObjectChanges, str]] = []

    def write_audit() -> None:
        if audit_dir is not None and audit is not None and any(changes.count for _, changes, _ in done):
            written = write_audit_objects(audit_dir, audit, done, job_id, run_id)
            log.info("Audit of %d changed records written to %s", sum(c.count for _, c, _ in done), written)

    try:
        for path, _ in scanned:
            changes = ObjectChanges(audit=[] if audit_dir is not None else None)
            _rewrite_object(path, plan, process, changes)
            done.append((path, changes, utc_now_text()))
            _add_to_report(report, path, changes)
            log.info(
                "Rewrote %s: %d records deleted, %d scrubbed",
                path,
                sum(changes.deleted.values()),
                sum(changes.updated.values()),
            )
    except BaseException:
        log.error(
            "Rewriting stopped after %d of %d objects; each object is whole, old or new",
            len(done),
            len(scanned),
        )
        try:
            write_audit()
        except Exception:  # the rewrite's own error is the one to raise
            log.exception("The audit of the %d objects already rewritten could not be written", len(done))
        raise
    write_audit()


def _rewrite_object(
    path: ObjectStoragePath, plan: Plan, process: ObjectProcess, changes: ObjectChanges
) -> None:
    mode = os.stat(path.path).st_mode & 0o7777 if path.protocol in LOCAL_PROTOCOLS else None
    with atomic_writer(path) as out:
        if mode is not None:
            os.fchmod(out.fileno(), mode)  # the rename must not widen or narrow who may read the data
        process(path, plan, changes, out)


def _add_to_report(report: ApplyReport, path: ObjectStoragePath, changes: ObjectChanges) -> None:
    add_counts(report, str(path), DELETE, changes.deleted)
    add_counts(report, str(path), SCRUB_GEO, changes.updated)
