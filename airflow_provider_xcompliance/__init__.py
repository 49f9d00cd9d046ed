"""Apache Airflow provider for X's batch compliance API.

Create compliance jobs, upload tweet or user IDs from object storage, wait for the job without
holding a worker slot, and land the results in object storage; plus a local emulator of the API.
"""

from __future__ import annotations

__version__ = "0.1.0"

CONNECTION_TYPE = "x_compliance"
DEFAULT_CONN_ID = "x_compliance_default"

CONNECTION_UI_BEHAVIOUR = {
    "hidden-fields": ["schema", "port", "login"],
    "relabeling": {"password": "Bearer token", "host": "API base URL"},
    "placeholders": {"host": "https://api.x.com", "password": "App-only bearer token from the X developer portal"},
}


def get_provider_info() -> dict:
    """What Airflow reads through the ``apache_airflow_provider`` entry point."""
    modules = lambda kind: [  # noqa: E731
        {"integration-name": "X Compliance", "python-modules": [f"airflow_provider_xcompliance.{kind}.compliance"]}
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
            {
                "connection-type": CONNECTION_TYPE,
                "hook-class-name": "airflow_provider_xcompliance.hooks.compliance.XComplianceHook",
                "hook-name": "X Compliance",
                "ui-field-behaviour": CONNECTION_UI_BEHAVIOUR,
                "conn-fields": {
                    "timeout": {
                        "label": "Request timeout (seconds)",
                        "description": "How long one HTTP request may take before it is retried.",
                        "schema": {"type": ["number", "null"], "default": 30},
                    },
                    "max_retries": {
                        "label": "Retries",
                        "description": "Retries of a call that failed with a 5xx answer, a timeout, a dropped connection or a 429.",
                        "schema": {"type": ["integer", "null"], "default": 5},
                    },
                    "max_rate_limit_wait": {
                        "label": "Longest rate-limit wait (seconds)",
                        "description": "On a 429 the client waits until the limit resets, if that is no further away than this.",
                        "schema": {"type": ["number", "null"], "default": 900},
                    },
                },
            }
        ],
    }
