"""The whole cycle over a SQLite archive with users, edit chains, dependents and geo dependents
(tests/system/test_cycle_dag.py points the connection and the workspace at its own)."""

import os

from airflow_provider_xcompliance.archives import SqlArchive
from airflow_provider_xcompliance.dags import compliance_cycle_dag

ARCHIVE = SqlArchive(
    conn_id="xc_archive",
    table="tweets",
    author_id_column="author_id",
    geo_columns=("place",),
    edit_root_column="edit_root_id",
    users_table="users",
    dependents={"tweet_media": "tweet_id"},
    user_dependents={"user_bios": "user_id"},
    geo_dependents={"tweet_places": "tweet_id"},
    audit_table="compliance_audit",
)

compliance_cycle_dag(
    "xc_cycle",
    ARCHIVE,
    os.environ.get("XC_CYCLE_WORKSPACE", "/tmp/xc-cycle"),
    schedule=None,
    poll_interval=1,
)
