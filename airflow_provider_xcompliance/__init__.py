"""Apache Airflow provider for X's batch compliance API.

Create compliance jobs, upload tweet or user IDs from object storage, wait for the job without
holding a worker slot, and land the results in object storage; plus a local emulator of the API.
"""

from __future__ import annotations

__version__ = "0.1.0"

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

CONNECTION_FIELDS = {
    "timeout": {
        "label": "Request timeout (seconds)",
        "description": "How long one HTTP request may take before it is retried.",
        "schema": {"type": ["number", "null"], "default": 30},
    },
    "max_retries": {
        "label": "Retries",
        "description": "Retries of a call that failed with a 5xx answer, a timeout, a dropped connection "
        "or a 429.",
        "schema": {"type": ["integer", "null"], "default": 5},
    },
    "max_rate_limit_wait": {
        "label": "Longest rate-limit wait (seconds)",
        "description": "On a 429 the client waits until the limit resets, if that is no further away "
        "than this.",
        "schema": {"type": ["number", "null"], "default": 900},
    },
}


def _connection_type(connection_type: str, hook_class: str, hook_name: str) -> dict:
    return {
        "connection-type": connection_type,
        "hook-class-name": f"airflow_provider_xcompliance.hooks.compliance.{hook_class}",
        "hook-name": hook_name,
        "ui-field-behaviour": CONNECTION_UI_BEHAVIOUR,
        "conn-fields": CONNECTION_FIELDS,
    }


def get_provider_info() -> dict:
    """What Airflow reads through the ``apache_airflow_provider`` entry point."""
    modules = lambda kind: [
        {
            "integration-name": "X Compliance",
            "python-modules": [f"airflow_provider_xcompliance.{kind}.compliance"],
        }
    ]
    return {
        "package-name": "airflow-provider-xcompliance",
        "name": "X Compliance",
        "description": "Keep stored tweets and users compliant with X's batch compliance API.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "X Compliance",
                "external-doc-url": "https://docs.x.com/x-api/compliance/batch-compliance/introduction",
                "tags": ["service"],
            }
        ],
        "hooks": modules("hooks"),
        "operators": [
            {
                "integration-name": "X Compliance",
                "python-modules": [
                    "airflow_provider_xcompliance.operators.compliance",
                    "airflow_provider_xcompliance.operators.apply",
                ],
            }
        ],
        "sensors": modules("sensors"),
        "triggers": modules("triggers"),
        "connection-types": [
            _connection_type(CONNECTION_TYPE, "XComplianceHook", "X Compliance"),
            _connection_type(
                OLD_CONNECTION_TYPE,
                "XComplianceOldTypeHook",
                f"X Compliance (old type name {OLD_CONNECTION_TYPE})",
            ),
        ],
    }
