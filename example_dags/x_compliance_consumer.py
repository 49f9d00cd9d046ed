"""Runs whenever fresh tweet compliance results land (scheduled on their Asset)."""

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_xcompliance.operators.compliance import results_asset

# [START howto_results_asset_consumer]
with DAG(
    "x_compliance_consumer",
    schedule=[results_asset("tweets")],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["x-compliance", "example"],
) as dag:

    @task
    def react(triggering_asset_events=None) -> list:
        """Each event's extra is the download summary: where the results are and what they say."""
        seen = []
        for asset, events in (triggering_asset_events or {}).items():
            for event in events:
                summary = event.extra
                print(
                    f"{asset.uri}: {summary['lines']} results at {summary['path']}, "
                    f"by reason {summary['by_reason']}"
                )
                seen.append({"path": summary["path"], "lines": summary["lines"]})
        return seen

    react()
# [END howto_results_asset_consumer]
