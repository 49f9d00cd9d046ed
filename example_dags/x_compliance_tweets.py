"""Weekly compliance check of the stored tweet IDs: submit → wait (deferred) → download."""

import os

from airflow_provider_xcompliance.dags import compliance_dag, weekly_schedule

# Where IDs are read and results written by default: any object-storage URL
# (file:///srv/compliance, s3://aws_default@bucket/compliance). Each run can override the paths.
DATA_URL = os.environ.get("X_COMPLIANCE_DATA_URL", "file:///tmp/x-compliance").rstrip("/")
# Seconds between checks of a running job. X's released API gives no estimated completion, and
# its job lookup allows 150 requests per 15 minutes: a minute suits real jobs (hours long); the
# demo, whose emulated jobs take seconds, sets a few seconds.
POLL_INTERVAL = float(os.environ.get("X_COMPLIANCE_POLL_INTERVAL", "60"))

# [START howto_compliance_dag]
dag = compliance_dag(
    "x_compliance_tweets",
    job_type="tweets",
    ids_path=f"{DATA_URL}/ids/tweets.txt",
    results_path=f"{DATA_URL}/results/tweets/",
    schedule=weekly_schedule(),  # Sundays 00:00 UTC; unpausing starts no run by itself
    poll_interval=POLL_INTERVAL,
    description="Ask X which stored tweets were deleted, suspended, protected or geo-scrubbed",
)
# [END howto_compliance_dag]
