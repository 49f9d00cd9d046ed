"""Typed errors: each says what went wrong and carries what the API said about it.

Messages never contain the bearer token or a signed URL: they are built from the problem
document, the job id and the status only.

Errors that another try cannot mend (a refused token, a bad ID file, a spent usage cap, a job
that ended ``failed``) are also ``AirflowFailException`` errors: the task fails at once instead of
spending its retries. Transient ones (5xx, dropped connections, rate limits) keep the retries.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException


class XComplianceError(AirflowException):
    """Base class of every error this provider raises."""


class XComplianceAPIError(XComplianceError):
    """The API answered with a problem document (or an unexpected status)."""

    def __init__(
        self,
        status: int,
        title: str = "",
        detail: str = "",
        type: str = "about:blank",
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type
        self.errors = errors or []
        text = f"HTTP {status} {title}".rstrip()
        if detail and detail != title:
            text += f": {detail}"
        for error in self.errors:
            if error.get("message"):
                text += f" ({error['message']})"
        super().__init__(text)


class XComplianceAuthError(XComplianceAPIError, AirflowFailException):
    """401/403: the bearer token is missing, wrong, or not allowed to use the endpoint."""


class XComplianceInvalidRequest(XComplianceAPIError, AirflowFailException):
    """400: the request was malformed (bad job type, name too long, bad status filter...)."""


class XComplianceNotFound(XComplianceAPIError):
    """404, or a 200 whose body holds only a resource-not-found error."""


class XComplianceConflict(XComplianceAPIError):
    """409: another compliance job is already active (the API allows only one)."""


class XComplianceRateLimited(XComplianceAPIError):
    """429: the endpoint's 15-minute budget is spent; ``reset_at`` says when it comes back."""

    def __init__(self, *args: Any, reset_at: datetime | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reset_at = reset_at


class XComplianceUsageCapped(XComplianceAPIError, AirflowFailException):
    """429 of type ``usage-capped``: the app's monthly or plan usage is spent. Unlike a rate
    limit, waiting for ``x-rate-limit-reset`` does not help, so nothing retries it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.args = (
            (
                f"The X app's usage cap is spent ({self.args[0]}); waiting will not help: "
                "raise the plan's cap or wait for the next billing period"
            ),
        )


class XComplianceServerError(XComplianceAPIError):
    """5xx: a fault on X's side; worth retrying."""


class XComplianceTransportError(XComplianceError):
    """The connection failed, dropped or timed out before an answer came back; worth retrying."""


class XComplianceStorageError(XComplianceError):
    """A signed upload/download URL was refused (a Google Cloud Storage XML error).

    The text shows GCS's ``Code`` and ``Details`` (what differed), its generic ``Message`` only
    when there are no details, and never the URL.
    """

    def __init__(self, status: int, code: str, message: str, details: str = "", what: str = "") -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        text = f"HTTP {status} {code}".rstrip() + f": {details or message}"
        super().__init__(f"{what}: {text}" if what else text)


class XComplianceStorageUnavailable(XComplianceStorageError):
    """408, 429 or 5xx from storage: GCS asks clients to retry these with backoff."""


class UploadWindowExpired(XComplianceError, AirflowFailException):
    """The job's upload URL is dead (15 minutes after creation): a new job is needed."""


class IdSourceError(XComplianceError, AirflowFailException):
    """The ID file cannot be read (missing, unreadable): reported before any job is created."""


class IdSourceChanged(XComplianceError, AirflowFailException):
    """The ID file changed while it was being uploaded: what was validated is not what is sent."""


class InvalidIdError(XComplianceError, AirflowFailException):
    """A line of an ID file is not a tweet or user ID; says which file, which line and why."""

    def __init__(self, source: str, line_number: int, value: bytes | str, why: str = "") -> None:
        self.source = source
        self.line_number = line_number
        shown = value if isinstance(value, str) else value.decode("utf-8", "replace")
        if len(shown) > 40:
            shown = shown[:40] + "..."
        self.value = shown
        why = why or "expected a decimal integer of 1 to 19 digits"
        super().__init__(f"{source}, line {line_number}: {shown!r} is not a tweet or user ID ({why})")


class JobNotComplete(XComplianceError):
    """Results were asked for a job that has none (yet): carries its status and error."""

    def __init__(self, job_id: str, status: str | None, error: str | None = None) -> None:
        self.job_id = job_id
        self.status = status
        self.error = error
        text = f"Compliance job {job_id} is {status or 'in an unknown state'}"
        if error:
            text += f": {error}"
        super().__init__(text)


class JobEndedError(JobNotComplete, AirflowFailException):
    """The job ended ``failed`` or ``expired``: waiting longer will not produce results."""


class InvalidResultsError(XComplianceError, AirflowFailException):
    """The downloaded results file is not the JSON Lines the API documents."""


# --- step 5: applying results ----------------------------------------------------------------


class ApplyConfigError(XComplianceError, AirflowFailException):
    """The apply task is configured wrongly (a missing table, column or key): nothing was changed."""


class ApplyRefused(XComplianceError, AirflowFailException):
    """A safety guard refused the change (``max_delete_fraction``): nothing was changed."""


class ApplyFailed(XComplianceError):
    """The database refused a statement while the results were applied; all was rolled back."""


class DataFormatError(XComplianceError, AirflowFailException):
    """An object of the data set is not what ``format`` and the field names say (a broken JSON
    line, a missing ID field or column). A broken data set does not heal on retry."""
