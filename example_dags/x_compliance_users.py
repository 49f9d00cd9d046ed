"""Weekly compliance check of the stored user IDs: submit → wait (deferred) → download."""

from _settings import DATA_URL

from airflow_provider_xcompliance.dags import compliance_dag

dag = compliance_dag(
    "x_compliance_users",
    job_type="users",
    ids_path=f"{DATA_URL}/ids/users.txt",
    results_path=f"{DATA_URL}/results/users/",
    schedule="@weekly",
    description="Ask X which stored users were deleted, suspended, protected or deactivated",
)
