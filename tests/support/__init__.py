"""Reusable test infrastructure: free ports, a real SeaweedFS S3 server, a throw-away Airflow.

Importing this package does not import Airflow or boto3.
"""

from .airflow_env import (
    AirflowEnv,
    DagRunResult,
    DagsTestTimeout,
    connection_env,
)
from .ports import free_port, free_ports
from .procs import die_with_parent, stop_process, venv_bin
from .seaweed import SeaweedS3, SeaweedStartError, unique_bucket_name, weed_binary

__all__ = [
    "AirflowEnv",
    "DagRunResult",
    "DagsTestTimeout",
    "SeaweedS3",
    "SeaweedStartError",
    "connection_env",
    "die_with_parent",
    "free_port",
    "free_ports",
    "stop_process",
    "unique_bucket_name",
    "venv_bin",
    "weed_binary",
]
