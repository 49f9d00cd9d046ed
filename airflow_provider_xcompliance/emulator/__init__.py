"""A local emulator of X's (Twitter's) batch compliance API, for tests and demos.

It serves the three API endpoints (``/2/compliance/jobs``) and the signed upload/download URLs
of X's storage on one loopback HTTP/1.1 server, with the real API's shapes, errors, rate
limits and job lifecycle, plus fault injection and a fast clock. Standard library only: it
imports nothing from Airflow and starts in milliseconds.

    from airflow_provider_xcompliance.emulator import XComplianceEmulator
    with XComplianceEmulator(speed=300) as emu:
        ...  # point a client at emu.base_url with bearer token emu.token

Modules: ``emulator`` (the class), ``config`` (its options, with their defaults and flags),
``server`` (HTTP and routing), ``api`` (API endpoints); the signed URLs of X's Google Cloud
Storage: ``gcs_uploads`` (simple and resumable uploads), ``gcs_downloads`` (the results object),
``gcs_errors`` (XML errors, the signed-URL check); ``state`` (jobs, their lifecycle and the
processing of uploads), built on ``objects`` (object names, signed URLs, local files) and
``sessions`` (resumable upload sessions), with ``jobs`` (the job records) and ``rate_limits``;
``signing`` (URL signatures), ``rules`` (result computation), ``dataset`` (synthetic data),
``faults`` (fault injection), ``httpio`` (body framing), ``timefmt`` (timestamp forms).
Command line: ``python -m airflow_provider_xcompliance.emulator --help``.
"""

from .dataset import generate_dataset
from .emulator import XComplianceEmulator
from .rules import expected_results

__all__ = ["XComplianceEmulator", "generate_dataset", "expected_results"]
