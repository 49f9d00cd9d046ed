"""The audit trail of what was changed: records named by keyed hash, never by plain ID."""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
from airflow.sdk import ObjectStoragePath

from airflow_provider_xcompliance.apply.plan import ObjectChanges
from airflow_provider_xcompliance.exceptions import ApplyConfigError
from airflow_provider_xcompliance.object_storage import Location, atomic_writer, to_path

AUDIT_IDS = ("hmac", "plain", "none")
DEFAULT_AUDIT_KEY_VARIABLE = "x_compliance_audit_key"


@dataclass(frozen=True)
class AuditIdentity:
    """How an audit row names a record: a keyed hash (HMAC-SHA256) by default, since tweet and
    user IDs are X content themselves; the plain ID or nothing only when the user asks."""

    mode: str = "hmac"
    key: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in AUDIT_IDS:
            raise ApplyConfigError(f"audit_ids must be one of {', '.join(AUDIT_IDS)}, not {self.mode!r}")
        if self.mode == "hmac" and not self.key:
            raise ApplyConfigError(
                "audit_ids='hmac' needs a key, and none is set. Set the Airflow Variable "
                f"{DEFAULT_AUDIT_KEY_VARIABLE!r} (or the one audit_key_variable names), e.g. "
                f'`airflow variables set {DEFAULT_AUDIT_KEY_VARIABLE} "$(openssl rand -hex 32)"`, '
                "or keep it in a secrets backend; or pass audit_ids='plain' or 'none'"
            )

    def record_key(self, record_id: str) -> str | None:
        if self.mode == "hmac":
            return hmac.digest(self.key, record_id.encode(), "sha256").hex()  # type: ignore[arg-type]
        return record_id if self.mode == "plain" else None


# The audit trail's columns, the same for a SQL audit table and a JSON Lines audit object.
AUDIT_COLUMNS = ("record_key", "record_type", "target", "reason", "change", "job_id", "run_id", "applied_at")


def audit_folder(
    audit: AuditIdentity | None, audit_path: Location | None, data: ObjectStoragePath
) -> ObjectStoragePath | None:
    if audit_path is None:
        return None
    if audit is None:
        raise ApplyConfigError("audit_path is set but audit (how rows name records) is not")
    folder = to_path(audit_path)
    inside = f"{folder.path.rstrip('/')}/".startswith(f"{data.path.rstrip('/')}/")
    if folder.protocol == data.protocol and inside:
        raise ApplyConfigError(
            f"audit_path {folder} lies inside data_path {data}: the audit objects would be read as data"
        )
    return folder


def write_audit_objects(
    folder: ObjectStoragePath,
    audit: AuditIdentity,
    done: list[tuple[ObjectStoragePath, ObjectChanges, str]],
    job_id: str | None,
    run_id: str | None,
) -> ObjectStoragePath:
    """One JSON Lines object, one row per changed record, named by keyed hash unless the user
    asked for plain IDs."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", job_id or "job")
    path = folder / f"{name}-{stamp}.jsonl"
    encode = msgspec.json.Encoder().encode
    with atomic_writer(path) as out:
        for target, changes, applied_at in done:
            batch = [
                encode(
                    {
                        "record_key": None if record_id is None else audit.record_key(record_id),
                        "record_type": "tweet",
                        "target": str(target),
                        "reason": reason,
                        "change": change,
                        "job_id": job_id,
                        "run_id": run_id,
                        "applied_at": applied_at,
                    }
                )
                for record_id, reason, change in changes.audit or ()
            ]
            if batch:
                out.write(b"\n".join(batch) + b"\n")
    return path
