"""The Airflow line the tests run on (3.3 with requirements.lock, 3.1 with XC_AIRFLOW=3.1)."""

from importlib.metadata import version

from packaging.version import Version

AIRFLOW_VERSION = Version(version("apache-airflow-core"))
# 3.3 shows a task's state changes (a deferral, for one) in its event log; 3.1 does not (3.2 is
# not tested here).
AIRFLOW_V_3_2_PLUS = Version("3.2") <= AIRFLOW_VERSION
