"""The client of X's API and of the signed Google Cloud Storage URLs behind it, without Airflow.

``masking`` (the leaf that masks signed URLs), ``jobs`` (the job object), ``codec`` (requests and
answers of the API, GCS's XML errors), ``retry`` (backoff, rate-limit waits, poll pacing),
``matching`` (which job an attempt may reuse), ``bodies`` (request bodies, resumable chunks, gzip
inflation), ``signed_urls`` (uploads and downloads through the signed URLs), ``upload_sessions``
(resumable sessions kept across tries). The hook and the trigger share all of it.
"""
