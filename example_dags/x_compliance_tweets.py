"""Weekly compliance check of the stored tweet IDs: submit → wait (deferred) → download."""

from _settings import DATA_URL

from airflow_provider_xcompliance.dags import compliance_dag

dag = compliance_dag(
    "x_compliance_tweets",
    job_type="tweets",
    ids_path=f"{DATA_URL}/ids/tweets.txt",
    results_path=f"{DATA_URL}/results/tweets/",
    schedule="@weekly",
    description="Ask X which stored tweets were deleted, suspended, protected or geo-scrubbed",
)
