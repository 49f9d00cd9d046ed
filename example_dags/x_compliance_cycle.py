"""The whole compliance duty over one archive, weekly: export its tweet and user IDs, check them
with X one job after the other, apply the users' results and then the tweets' (edit chains and
dependent records included), and report.

The archive is the demo's: the ``tweets`` table behind ``x_compliance_demo_db`` (any
common.sql connection). Describe yours the same way, with its users table, edit chains and the
tables that hang off a tweet or a user. The ID files and results go under
``X_COMPLIANCE_DATA_URL`` (any object-storage URL), a folder per run; the audit rows name each
record by an HMAC keyed by the Airflow Variable ``x_compliance_audit_key``.
"""

import os

from airflow_provider_xcompliance.archives import SqlArchive
from airflow_provider_xcompliance.dags import compliance_cycle_dag

DATA_URL = os.environ.get("X_COMPLIANCE_DATA_URL", "file:///tmp/x-compliance").rstrip("/")
POLL_INTERVAL = float(os.environ.get("X_COMPLIANCE_POLL_INTERVAL", "60"))

# [START howto_compliance_cycle_dag]
ARCHIVE = SqlArchive(
    conn_id="x_compliance_demo_db",
    table="tweets",
    author_id_column="author_id",
    geo_columns=("geo_lat", "geo_lon", "place_id"),
    # with an archive that has them:
    # edit_root_column="edit_root_id", users_table="users",
    # dependents={"tweet_media": "tweet_id"}, user_dependents={"user_bios": "user_id"},
    # geo_dependents={"tweet_places": "tweet_id"},
    audit_table="compliance_audit",
)

compliance_cycle_dag(
    "x_compliance_cycle",
    ARCHIVE,
    workspace=f"{DATA_URL}/cycle",  # ID files and results, a folder per run
    poll_interval=POLL_INTERVAL,
    apply_options={"max_delete_fraction": 0.2},  # refuse a run that would wipe a table
    tags=["x-compliance", "example"],
    description="Export, check and apply for the demo archive, tweets and users",
)
# [END howto_compliance_cycle_dag]
