"""``[core] hostname_callable`` for the processes of tests/support/celery_cluster.py.

Every component of the test cluster runs on this one machine, so the default (the FQDN) would
give every task instance and every job the same hostname. Each process started by the cluster
carries its name in ``XC_WORKER_NAME`` (``w1``, ``w2``, ``scheduler``, ``triggerer`` ...), and
Airflow records it as the hostname of the task instances it runs and of its jobs.

``airflow celery worker -H w1`` alone does not do it: ``-H`` names the Celery node
(``celery@w1``), while the task runner stores ``get_hostname()`` (this callable) in the task
instance.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return os.environ.get("XC_WORKER_NAME") or socket.getfqdn()
