"""The xcompliance connection's provider metadata: both type names, one form (every way Airflow can
hold the connection: tests/system/test_connection.py)."""

from __future__ import annotations

from airflow_provider_xcompliance import get_provider_info
from airflow_provider_xcompliance.connection import CONNECTION_UI_BEHAVIOUR


def test_provider_metadata_declares_both_type_names_with_one_form():
    info = get_provider_info()
    assert info["package-name"] == "airflow-provider-xcompliance"
    new, old = info["connection-types"]
    assert (new["connection-type"], new["hook-name"]) == ("xcompliance", "X Compliance")
    assert (old["connection-type"], old["hook-name"]) == (
        "x_compliance",
        "X Compliance (old type name x_compliance)",
    )
    assert new["hook-class-name"] == "airflow_provider_xcompliance.hooks.compliance.XComplianceHook"
    assert old["hook-class-name"] == "airflow_provider_xcompliance.hooks.compliance.XComplianceOldTypeHook"
    for connection in (new, old):
        behaviour = connection["ui-field-behaviour"]
        assert behaviour["relabeling"] == {"password": "Bearer token", "host": "API base URL"}
        assert set(behaviour["hidden-fields"]) == {
            "schema",
            "login",
        }  # the port is shown: the Test button needs it
        assert behaviour["placeholders"]["port"] == "443"
        assert set(connection["conn-fields"]) == {"timeout", "max_retries", "max_rate_limit_wait"}


def test_hook_gives_the_3_1_ui_the_same_form_in_its_keys():
    from airflow_provider_xcompliance.hooks.compliance import XComplianceHook, XComplianceOldTypeHook

    assert XComplianceHook.conn_type == "xcompliance" and XComplianceOldTypeHook.conn_type == "x_compliance"
    behaviour = XComplianceHook.get_ui_field_behaviour()
    assert behaviour == {
        "hidden_fields": CONNECTION_UI_BEHAVIOUR["hidden-fields"],
        "relabeling": CONNECTION_UI_BEHAVIOUR["relabeling"],
        "placeholders": CONNECTION_UI_BEHAVIOUR["placeholders"],
    }
    assert XComplianceOldTypeHook.get_ui_field_behaviour() == behaviour
