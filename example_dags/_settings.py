"""Where the example DAGs read IDs and write results by default.

``X_COMPLIANCE_DATA_URL`` is any object-storage URL (``file:///srv/compliance``,
``s3://aws_default@my-bucket/compliance``); ``./dev demo`` and ``./dev airflow`` point it at a
local folder. Every path can also be changed per run from the "Trigger DAG" form.
"""

import os

DATA_URL = os.environ.get("X_COMPLIANCE_DATA_URL", "file:///tmp/x-compliance").rstrip("/")
