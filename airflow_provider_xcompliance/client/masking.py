"""Signed and session URLs are credentials: the one rule that masks them in Airflow's logs."""

from __future__ import annotations

import re

from airflow.sdk.log import mask_secret

_URL_SECRETS = re.compile(r"(?:[Ss]ignature|upload_id|upload_session)[=/]([^&/?]+)")


def mask_url(url: str | None) -> None:
    """Signed and session URLs are credentials: mask them whole and their secret parts too."""
    if url:
        mask_secret(url)
        for value in _URL_SECRETS.findall(url):
            mask_secret(value)
