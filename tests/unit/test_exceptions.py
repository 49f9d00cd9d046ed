"""Which errors spend a task's retries and which fail it at once."""

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_xcompliance import exceptions as xc
from airflow_provider_xcompliance.exceptions import (
    ApplyConfigError,
    ApplyFailed,
    ApplyRefused,
    DataFormatError,
)

# Another try cannot mend these: the task fails without spending its retries.
PERMANENT = [
    xc.XComplianceAuthError(401, "Unauthorized"),
    xc.XComplianceInvalidRequest(400, "Invalid Request"),
    xc.XComplianceUsageCapped(429, "UsageCapExceeded"),
    xc.UploadWindowExpired("the upload URL expired"),
    xc.IdSourceError("The IDs file was not found: file:///x"),
    xc.IdSourceChanged("changed"),
    xc.InvalidIdError("file:///ids.txt", 3, b"12x"),
    xc.JobEndedError("1", "failed", "boom"),
    xc.InvalidResultsError("line 2: not JSON"),
    ApplyConfigError("no table tweets"),
    ApplyRefused("would delete 60 %"),
    DataFormatError("data.jsonl, line 2: not JSON"),
]
# These may pass: the task's retries are for them.
TRANSIENT = [
    xc.XComplianceServerError(503, "Service Unavailable"),
    xc.XComplianceRateLimited(429, "Too Many Requests"),
    xc.XComplianceTransportError("connection reset"),
    xc.XComplianceStorageUnavailable(503, "ServiceUnavailable", "try again"),
    xc.XComplianceConflict(409, "Conflict"),
    xc.XComplianceNotFound(404, "Not Found"),
    xc.JobNotComplete("1", "in_progress"),
    ApplyFailed("the database refused a statement"),
]


@pytest.mark.parametrize("error", PERMANENT, ids=lambda e: type(e).__name__)
def test_permanent_errors_fail_the_task_at_once(error):
    assert isinstance(error, AirflowFailException)
    assert isinstance(error, xc.XComplianceError)  # still caught as the provider's errors


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: type(e).__name__)
def test_transient_errors_keep_the_retries(error):
    assert not isinstance(error, AirflowFailException)


def test_every_error_of_the_provider_is_classified_here():
    """Each error class in exceptions.py is in one list above: a new one must say whether it
    spends retries."""
    defined = {
        cls
        for cls in vars(xc).values()
        if isinstance(cls, type) and issubclass(cls, xc.XComplianceError) and cls.__module__ == xc.__name__
    }
    classified = {type(error) for error in PERMANENT + TRANSIENT}
    bases = {xc.XComplianceError, xc.XComplianceAPIError, xc.XComplianceStorageError}
    assert defined - classified - bases == set()
