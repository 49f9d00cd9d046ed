"""Step 5: applying X's results to the user's own data.

``rules`` (what each reason asks for), ``flagged`` (result lines as flagged records), ``report``
(the counts a run reports), ``audit`` (keyed-hash audit rows), ``sql`` (tables through any
common.sql connection), ``files`` (JSON Lines and Parquet data sets in object storage), with
``plan``, ``partitions``, ``jsonl`` and ``parquet`` as its parts.
"""
