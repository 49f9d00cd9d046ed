"""Apache Airflow provider for X's batch compliance API.

Create compliance jobs, upload tweet or user IDs from object storage, wait for the job without
holding a worker slot, land the results in object storage and apply them to the user's data; plus
a local emulator of the API.

The Airflow parts (``hooks``, ``operators``, ``sensors``, ``triggers``, ``dags``, ``task_groups``)
import the rest, never the other way: ``client`` (the API and its signed URLs), ``id_files``,
``results``, ``apply`` (step 5), ``object_storage``, ``connection``, ``reports`` (the typed
reports tasks return), ``exceptions`` and ``utils``. ``emulator`` stands alone.
"""

from __future__ import annotations

__version__ = "0.1.0"


def get_provider_info() -> dict:
    """What Airflow reads through the ``apache_airflow_provider`` entry point."""
    from airflow_provider_xcompliance.connection import connection_types

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
                    "airflow_provider_xcompliance.operators.export",
                    "airflow_provider_xcompliance.operators.apply",
                ],
            }
        ],
        "sensors": modules("sensors"),
        "triggers": modules("triggers"),
        "connection-types": connection_types(),
    }
