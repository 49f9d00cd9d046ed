"""The X Compliance connection, in one place: its type names, its form, and the settings it holds.

Provider discovery reads this module (through :func:`connection_types`), so it imports nothing of
Airflow's at the top: the two names that need Airflow are imported where they are used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from airflow_provider_xcompliance.client.retry import RetryPolicy

DEFAULT_BASE_URL = "https://api.x.com"
USER_AGENT = "airflow-provider-xcompliance"


@dataclass(frozen=True)
class ConnectionSettings:
    """What an ``x_compliance`` connection holds, read the same way by hook and trigger."""

    base_url: str
    token: str = field(repr=False)
    timeout: float = 30.0
    max_retries: int = 5
    max_rate_limit_wait: float = 900.0

    @classmethod
    def from_connection(cls, conn: Any) -> ConnectionSettings:
        token = (conn.password or "").strip()
        if not token:
            from airflow_provider_xcompliance.exceptions import XComplianceError

            raise XComplianceError(
                f"Connection {conn.conn_id!r} has no bearer token: put it in the password field"
            )
        extra = conn.extra_dejson or {}

        def setting(name: str, kind: type, default: Any) -> Any:
            value = extra.get(name)  # an empty field of the UI form is stored as null
            return default if value in (None, "") else kind(value)

        return cls(
            base_url=base_url_of(conn),
            token=token,
            timeout=setting("timeout", float, cls.timeout),
            max_retries=setting("max_retries", int, cls.max_retries),
            max_rate_limit_wait=setting("max_rate_limit_wait", float, cls.max_rate_limit_wait),
        )

    @property
    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.token}",
            "Accept-Encoding": "gzip",
            "User-Agent": USER_AGENT,
        }

    @property
    def retry_policy(self) -> RetryPolicy:
        from airflow_provider_xcompliance.client.retry import RetryPolicy

        return RetryPolicy(max_retries=self.max_retries, max_rate_limit_wait=self.max_rate_limit_wait)


def base_url_of(conn: Any) -> str:
    """The API base URL of a connection: host (with or without scheme) and port, or X's default."""
    host = (conn.host or "").strip().rstrip("/")
    if not host:
        return DEFAULT_BASE_URL
    if "://" not in host:
        scheme = conn.schema if conn.schema in ("http", "https") else "https"
        host = f"{scheme}://{host}"
    if conn.port and not re.search(r":\d+$", host):
        host = f"{host}:{conn.port}"
    return host


_DEFAULTS = ConnectionSettings(base_url=DEFAULT_BASE_URL, token="")  # the form shows the same defaults

# "xcompliance": a URI scheme may not contain "_" (RFC 3986; Airflow warns), and Airflow turns a
# "-" in a URI scheme into "_". Connections stored under the old type name keep working.
CONNECTION_TYPE = "xcompliance"
OLD_CONNECTION_TYPE = "x_compliance"
DEFAULT_CONN_ID = "x_compliance_default"


# The connection form, as Airflow 3.2+ reads it from the provider info (the hook hands the same
# definition to the 3.0/3.1 UIs). The port is shown: Airflow 3.3.2's Test button, in the
# Connections list, posts port 0 for a connection whose port is empty, and the API then refuses
# to test it ("Bad Request": the host or port differs from the stored connection).
CONNECTION_UI_BEHAVIOUR = {
    "hidden-fields": ["schema", "login"],
    "relabeling": {"password": "Bearer token", "host": "API base URL"},
    "placeholders": {
        "host": "https://api.x.com",
        "port": "443",
        "password": "App-only bearer token from the X developer portal",
    },
}


class FieldSchema(TypedDict):
    """The JSON schema of one extra field: its types and default."""

    type: list[str]
    default: float | int


class ConnectionField(TypedDict):
    """One extra field of the connection form, as the provider info's ``conn-fields`` hold it."""

    label: str
    description: str
    schema: FieldSchema


CONNECTION_FIELDS: dict[str, ConnectionField] = {
    "timeout": {
        "label": "Request timeout (seconds)",
        "description": "How long one HTTP request may take before it is retried.",
        "schema": {"type": ["number", "null"], "default": _DEFAULTS.timeout},
    },
    "max_retries": {
        "label": "Retries",
        "description": "Retries of a call that failed with a 5xx answer, a timeout, a dropped connection "
        "or a 429.",
        "schema": {"type": ["integer", "null"], "default": _DEFAULTS.max_retries},
    },
    "max_rate_limit_wait": {
        "label": "Longest rate-limit wait (seconds)",
        "description": "On a 429 the client waits until the limit resets, if that is no further away "
        "than this.",
        "schema": {"type": ["number", "null"], "default": _DEFAULTS.max_rate_limit_wait},
    },
}


def _connection_type(connection_type: str, hook_class: str, hook_name: str) -> dict[str, Any]:
    return {
        "connection-type": connection_type,
        "hook-class-name": f"airflow_provider_xcompliance.hooks.compliance.{hook_class}",
        "hook-name": hook_name,
        "ui-field-behaviour": CONNECTION_UI_BEHAVIOUR,
        "conn-fields": CONNECTION_FIELDS,
    }


def connection_types() -> list[dict[str, Any]]:
    """The provider info's ``connection-types``: the type and its old name, with the same form."""
    return [
        _connection_type(CONNECTION_TYPE, "XComplianceHook", "X Compliance"),
        _connection_type(
            OLD_CONNECTION_TYPE,
            "XComplianceOldTypeHook",
            f"X Compliance (old type name {OLD_CONNECTION_TYPE})",
        ),
    ]
