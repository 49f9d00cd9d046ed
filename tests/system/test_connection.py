"""The xcompliance connection in a real Airflow: every way Airflow can hold it, and the old type name
``x_compliance``, which keeps working (the provider metadata: tests/unit/test_connection.py)."""

from __future__ import annotations

import json

import pytest

from airflow_provider_xcompliance.emulator import XComplianceEmulator

TOKEN = "conn-test-token/with+special=chars"

CHECK = """
from airflow_provider_xcompliance.hooks.compliance import XComplianceHook
hook = XComplianceHook(x_conn_id="x_compliance_default")
settings = hook.settings
print("RESULT", hook.test_connection(), settings.base_url, settings.timeout, settings.max_retries)
"""

# As Airflow itself reads a connection: its type picks the hook (the UI's Test button does this).
AIRFLOW_CHECK = """
from airflow.models.connection import Connection
conn = Connection.get_connection_from_secrets("x_compliance_default")
print("HOOK", conn.conn_type, type(conn.get_hook()).__name__)
print("RESULT", conn.test_connection())
"""


def test_airflow_lists_the_provider(airflow_env):
    providers = airflow_env.airflow("providers", "list", "-o", "json")
    assert any(
        p["package_name"] == "airflow-provider-xcompliance"
        for p in json.loads(providers.stdout[providers.stdout.index("[") :])
    )
    hooks = airflow_env.airflow("providers", "hooks", "-o", "json")
    listed = json.loads(hooks.stdout[hooks.stdout.index("[") :])
    ours = {h["connection_type"]: h["class"] for h in listed if "xcompliance" in str(h.get("class"))}
    assert ours == {
        "xcompliance": "airflow_provider_xcompliance.hooks.compliance.XComplianceHook",
        "x_compliance": "airflow_provider_xcompliance.hooks.compliance.XComplianceOldTypeHook",
    }, listed
    assert "Inconsistency" not in hooks.stdout


@pytest.mark.parametrize("form", ["json", "uri", "uri-encoded-host", "secrets-backend"])
def test_connection_forms(airflow_env, tmp_path, form):
    with XComplianceEmulator(token=TOKEN, data_dir=tmp_path / "emu") as emulator:
        host, port = emulator.base_url.removeprefix("http://").split(":")
        quoted = "conn-test-token%2Fwith%2Bspecial%3Dchars"
        if form == "json":
            env = {
                "AIRFLOW_CONN_X_COMPLIANCE_DEFAULT": json.dumps(
                    {
                        "conn_type": "xcompliance",
                        "host": emulator.base_url,
                        "password": TOKEN,
                        "extra": {"timeout": 7, "max_retries": 2},
                    }
                )
            }
        elif form == "uri":
            env = {
                "AIRFLOW_CONN_X_COMPLIANCE_DEFAULT": f"xcompliance://:{quoted}@{host}:{port}/http?timeout=7&max_retries=2"
            }
        elif form == "uri-encoded-host":
            env = {
                "AIRFLOW_CONN_X_COMPLIANCE_DEFAULT": f"xcompliance://:{quoted}@http%3A%2F%2F{host}%3A{port}?timeout=7&max_retries=2"
            }
        else:
            connections = tmp_path / "connections.json"
            connections.write_text(
                json.dumps(
                    {
                        "x_compliance_default": {
                            "conn_type": "xcompliance",
                            "host": emulator.base_url,
                            "password": TOKEN,
                            "extra": {"timeout": 7, "max_retries": 2},
                        }
                    }
                )
            )
            env = {
                "AIRFLOW__SECRETS__BACKEND": "airflow.secrets.local_filesystem.LocalFilesystemBackend",
                "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps({"connections_file_path": str(connections)}),
            }
        result = airflow_env.python(CHECK, env=env)
        seen = [entry for entry in emulator.request_log if entry[1] == "list_jobs"]
    line = next(
        (line for line in result.stdout.splitlines() if line.startswith("RESULT")), result.stdout[-2000:]
    )
    assert line.startswith(
        f"RESULT (True, 'Connected to {emulator.base_url}: 0 recent tweets compliance job(s)')"
    ), line
    assert line.endswith(f"{emulator.base_url} 7.0 2")
    assert seen == [("GET", "list_jobs", 200)]
    assert "RFC3986" not in result.stdout


@pytest.mark.parametrize("form", ["json", "uri"])
def test_old_type_name_still_loads_and_tests(airflow_env, tmp_path, form):
    """Connections stored as ``x_compliance`` (or ``x-compliance://``, which Airflow reads as
    ``x_compliance``) before the rename: Airflow finds their hook and tests them."""
    with XComplianceEmulator(token=TOKEN, data_dir=tmp_path / "emu") as emulator:
        host, port = emulator.base_url.removeprefix("http://").split(":")
        quoted = "conn-test-token%2Fwith%2Bspecial%3Dchars"
        conn = (
            json.dumps({"conn_type": "x_compliance", "host": emulator.base_url, "password": TOKEN})
            if form == "json"
            else f"x-compliance://:{quoted}@{host}:{port}/http"
        )
        result = airflow_env.python(AIRFLOW_CHECK, env={"AIRFLOW_CONN_X_COMPLIANCE_DEFAULT": conn})
    lines = [line for line in result.stdout.splitlines() if line.startswith(("HOOK", "RESULT"))]
    assert lines == [
        "HOOK x_compliance XComplianceOldTypeHook",
        f"RESULT (True, 'Connected to {emulator.base_url}: 0 recent tweets compliance job(s)')",
    ], result.stdout[-3000:]
    assert "Inconsistency" not in result.stdout


def test_new_type_name_loads_its_hook_without_warnings(airflow_env, tmp_path):
    with XComplianceEmulator(token=TOKEN, data_dir=tmp_path / "emu") as emulator:
        conn = json.dumps({"conn_type": "xcompliance", "host": emulator.base_url, "password": TOKEN})
        result = airflow_env.python(AIRFLOW_CHECK, env={"AIRFLOW_CONN_X_COMPLIANCE_DEFAULT": conn})
    lines = [line for line in result.stdout.splitlines() if line.startswith(("HOOK", "RESULT"))]
    assert lines == [
        "HOOK xcompliance XComplianceHook",
        f"RESULT (True, 'Connected to {emulator.base_url}: 0 recent tweets compliance job(s)')",
    ], result.stdout[-3000:]
    assert "RFC3986" not in result.stdout and "Inconsistency" not in result.stdout


def test_connection_test_reports_why_it_failed(airflow_env, tmp_path):
    with XComplianceEmulator(token=TOKEN, data_dir=tmp_path / "emu") as emulator:
        env = {
            "AIRFLOW_CONN_X_COMPLIANCE_DEFAULT": json.dumps(
                {"conn_type": "xcompliance", "host": emulator.base_url, "password": "not-the-token"}
            )
        }
        wrong_token = airflow_env.python(CHECK, env=env).stdout
    assert (
        'RESULT (False, "HTTP 401 Unauthorized: check the bearer token (the connection\'s password)")'
        in wrong_token
        and "not-the-token" not in wrong_token
    )
    env = {
        "AIRFLOW_CONN_X_COMPLIANCE_DEFAULT": json.dumps(
            {"conn_type": "xcompliance", "host": "http://127.0.0.1:9", "password": TOKEN}
        )
    }
    unreachable = airflow_env.python(CHECK, env=env).stdout
    assert (
        "RESULT (False, 'Cannot reach http://127.0.0.1:9: GET /2/compliance/jobs: ConnectionError')"
        in unreachable
    )
