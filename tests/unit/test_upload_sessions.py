"""A resumable upload's session, kept between tries in an Airflow Variable: encrypted with the
bearer token, and tied to the ID file's version (the emulator tier resumes real uploads with it:
tests/emulator/provider/test_transfers.py)."""

from __future__ import annotations

import logging

import pytest

from airflow_provider_xcompliance.client.upload_sessions import VariableSessionKeeper
from tests.support.variables import variables_in_a_dict


@pytest.fixture
def variables(monkeypatch):
    """Airflow's Variables, kept in a dict (tests/support/variables.py)."""
    return variables_in_a_dict(monkeypatch)


def test_a_kept_session_cannot_be_read_without_the_bearer_token(tmp_path, variables):
    log = logging.getLogger("test")
    VariableSessionKeeper("7", "the token", "ids|1|a", log).save("https://storage/s?upload_id=abc")
    assert (
        VariableSessionKeeper("7", "the token", "ids|1|a", log).session_url
        == "https://storage/s?upload_id=abc"
    )
    assert VariableSessionKeeper("7", "another token", "ids|1|a", log).session_url is None
    assert VariableSessionKeeper("7", "the token", "ids|2|b", log).session_url is None  # another file
