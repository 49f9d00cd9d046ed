"""The x_compliance connection: provider metadata, and every way Airflow can hold it."""

from __future__ import annotations

import json

import pytest

from airflow_provider_xcompliance import get_provider_info
from airflow_provider_xcompliance.emulator import XComplianceEmulator

TOKEN = "conn-test-token/with+special=chars"

CHECK = """
from airflow_provider_xcompliance.hooks.compliance import XComplianceHook
hook = XComplianceHook(x_conn_id="x_compliance_default")
print("RESULT", hook.test_connection(), hook.settings.base_url, hook.settings.timeout, hook.settings.max_retries)
"""


def test_provider_metadata_declares_the_connection_form():
    info = get_provider_info()
    assert info["package-name"] == "airflow-provider-xcompliance"
    (connection,) = info["connection-types"]
    assert connection["connection-type"] == "x_compliance"
    assert connection["hook-class-name"] == "airflow_provider_xcompliance.hooks.compliance.XComplianceHook"
    behaviour = connection["ui-field-behaviour"]
    assert behaviour["relabeling"] == {"password": "Bearer token", "host": "API base URL"}
    assert set(behaviour["hidden-fields"]) == {"schema", "port", "login"}
    assert set(connection["conn-fields"]) == {"timeout", "max_retries", "max_rate_limit_wait"}


def test_airflow_lists_the_provider(airflow_env):
    providers = airflow_env.airflow("providers", "list", "-o", "json")
    assert any(p["package_name"] == "airflow-provider-xcompliance" for p in json.loads(providers.stdout[providers.stdout.index("["):]))
    hooks = airflow_env.airflow("providers", "hooks", "-o", "json")
    assert "x_compliance" in hooks.stdout and "XComplianceHook" in hooks.stdout


@pytest.mark.parametrize("form", ["json", "uri", "uri-encoded-host", "secrets-backend"])
def test_connection_forms(airflow_env, tmp_path, form):
    with XComplianceEmulator(token=TOKEN, data_dir=tmp_path / "emu") as emulator:
        host, port = emulator.base_url.removeprefix("http://").split(":")
        quoted = "conn-test-token%2Fwith%2Bspecial%3Dchars"
        if form == "json":
            env = {"AIRFLOW_CONN_X_COMPLIANCE_DEFAULT": json.dumps({
                "conn_type": "x_compliance", "host": emulator.base_url, "password": TOKEN,
                "extra": {"timeout": 7, "max_retries": 2}})}
        elif form == "uri":
            env = {"AIRFLOW_CONN_X_COMPLIANCE_DEFAULT": f"x-compliance://:{quoted}@{host}:{port}/http?timeout=7&max_retries=2"}
        elif form == "uri-encoded-host":
            env = {"AIRFLOW_CONN_X_COMPLIANCE_DEFAULT":
                   f"x-compliance://:{quoted}@http%3A%2F%2F{host}%3A{port}?timeout=7&max_retries=2"}
        else:
            connections = tmp_path / "connections.json"
            connections.write_text(json.dumps({"x_compliance_default": {
                "conn_type": "x_compliance", "host": emulator.base_url, "password": TOKEN,
                "extra": {"timeout": 7, "max_retries": 2}}}))
            env = {"AIRFLOW__SECRETS__BACKEND": "airflow.secrets.local_filesystem.LocalFilesystemBackend",
                   "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps({"connections_file_path": str(connections)})}
        result = airflow_env.python(CHECK, env=env)
        seen = [entry for entry in emulator.request_log if entry[1] == "list_jobs"]
    line = next((line for line in result.stdout.splitlines() if line.startswith("RESULT")), result.stdout[-2000:])
    assert line.startswith(f"RESULT (True, 'Connected to {emulator.base_url}: 0 recent tweets compliance job(s)')"), line
    assert line.endswith(f"{emulator.base_url} 7.0 2")
    assert seen == [("GET", "list_jobs", 200)]


def test_connection_test_reports_why_it_failed(airflow_env, tmp_path):
    with XComplianceEmulator(token=TOKEN, data_dir=tmp_path / "emu") as emulator:
        env = {"AIRFLOW_CONN_X_COMPLIANCE_DEFAULT": json.dumps(
            {"conn_type": "x_compliance", "host": emulator.base_url, "password": "not-the-token"})}
        wrong_token = airflow_env.python(CHECK, env=env).stdout
    assert "RESULT (False, \"HTTP 401 Unauthorized: check the bearer token (the connection's password)\")" in wrong_token and "not-the-token" not in wrong_token
    env = {"AIRFLOW_CONN_X_COMPLIANCE_DEFAULT": json.dumps(
        {"conn_type": "x_compliance", "host": "http://127.0.0.1:9", "password": TOKEN})}
    unreachable = airflow_env.python(CHECK, env=env).stdout
    assert "RESULT (False, 'Cannot reach http://127.0.0.1:9: GET /2/compliance/jobs: ConnectionError')" in unreachable
