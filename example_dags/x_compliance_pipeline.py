"""A compliance step inside a larger pipeline.

``export_*`` write the IDs a data store holds to object storage, the compliance task groups
check them with X (tweets and users side by side: where X allows only one active job, the
second submit waits, deferred, for the first job to end), and ``apply`` reads the summaries
and the results to decide what to delete or redact.
"""

import json
import os

from airflow.sdk import DAG, ObjectStoragePath, task

from airflow_provider_xcompliance.dags import compliance_task_group, weekly_schedule

# Where IDs are read and results written by default: any object-storage URL
# (file:///srv/compliance, s3://aws_default@bucket/compliance). Each run can override the paths.
DATA_URL = os.environ.get("X_COMPLIANCE_DATA_URL", "file:///tmp/x-compliance").rstrip("/")

RUN_DATA = DATA_URL + "/pipeline/{{ ds }}"

with DAG(
    "x_compliance_pipeline",
    schedule=weekly_schedule(),  # Sundays 00:00 UTC; unpausing starts no run by itself
    catchup=False,
    max_active_runs=1,
    tags=["x-compliance", "example"],
) as dag:

    @task
    def export_ids(source: str, target: str) -> dict:
        """Stand-in for "SELECT id FROM tweets": copies the stored ID list, streaming."""
        source_path, target_path = ObjectStoragePath(source), ObjectStoragePath(target)
        target_path.parent.mkdir(parents=True, exist_ok=True)
        with source_path.open("rb") as reader, target_path.open("wb") as writer:
            while block := reader.read(1024 * 1024):
                writer.write(block)
        return {"ids_path": target}

    # [START howto_read_results_by_reason]
    @task
    def apply(tweets: dict, users: dict) -> dict:
        """Reads both summaries and the tweet results, as a redaction step would. It decides by
        ``reason``, never by ``action`` (X sends ``delete`` for geo-scrubbed tweets too)."""
        to_delete, to_scrub_geo = set(), set()
        with ObjectStoragePath(tweets["path"]).open("rb") as results:
            for line in results:
                record = json.loads(line)
                (to_scrub_geo if record.get("reason") == "scrub_geo" else to_delete).add(record["id"])
        report = {
            "tweets_to_delete": len(to_delete),
            "tweets_to_scrub_geo": len(to_scrub_geo - to_delete),
            "tweets_by_reason": tweets["by_reason"],
            "users_by_reason": users["by_reason"],
        }
        print(f"Redaction plan: {report}")
        return report

    # [END howto_read_results_by_reason]
    # [START howto_compliance_task_group]
    tweet_ids = export_ids.override(task_id="export_tweet_ids")(
        f"{DATA_URL}/ids/tweets.txt", f"{RUN_DATA}/tweet_ids.txt"
    )
    user_ids = export_ids.override(task_id="export_user_ids")(
        f"{DATA_URL}/ids/users.txt", f"{RUN_DATA}/user_ids.txt"
    )
    tweets = compliance_task_group(
        "tweets", f"{RUN_DATA}/tweet_ids.txt", f"{RUN_DATA}/results/", poll_interval=5
    )
    users = compliance_task_group(
        "users", f"{RUN_DATA}/user_ids.txt", f"{RUN_DATA}/results/", poll_interval=5
    )

    tweet_ids >> tweets
    user_ids >> users
    apply(
        tweets.children["tweets_compliance.download"].output,
        users.children["users_compliance.download"].output,
    )
    # [END howto_compliance_task_group]
