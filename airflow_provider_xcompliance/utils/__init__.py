"""Small helpers the Airflow parts share: OpenLineage datasets, read-ahead threads, progress logs."""
