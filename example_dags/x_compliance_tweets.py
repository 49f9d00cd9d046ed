"""Weekly compliance check of the stored tweet IDs: submit → wait (deferred) → download."""

import os

import pendulum

from airflow_provider_xcompliance.dags import compliance_dag

# Where IDs are read and results written by default: any object-storage URL
# (file:///srv/compliance, s3://aws_default@bucket/compliance). Each run can override the paths.
DATA_URL = os.environ.get("X_COMPLIANCE_DATA_URL", "file:///tmp/x-compliance").rstrip("/")

dag = compliance_dag(
    "x_compliance_tweets",
    job_type="tweets",
    ids_path=f"{DATA_URL}/ids/tweets.txt",
    results_path=f"{DATA_URL}/results/tweets/",
    schedule="@weekly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),  # unpausing runs the latest week at once
    description="Ask X which stored tweets were deleted, suspended, protected or geo-scrubbed",
)
