"""Self-test of tests/support's helpers that need no server: free ports, connection variables,
bucket names."""

from __future__ import annotations

import json

from tests.support import connection_env, free_port, free_ports, unique_bucket_name


def test_free_ports_are_distinct_and_bindable():
    import socket

    ports = free_ports(8)
    assert len(set(ports)) == 8
    p = free_port()
    assert p not in ports
    with socket.socket() as s:
        s.bind(("127.0.0.1", p))


def test_connection_env_json():
    env = connection_env("x_compliance_default", "x_compliance", host="http://127.0.0.1:1", password="tok")
    assert json.loads(env["AIRFLOW_CONN_X_COMPLIANCE_DEFAULT"]) == {
        "conn_type": "x_compliance",
        "host": "http://127.0.0.1:1",
        "password": "tok",
    }


def test_unique_bucket_names_are_valid():
    names = {unique_bucket_name("Some_Prefix") for _ in range(20)}
    assert len(names) == 20
    for n in names:
        assert 3 <= len(n) <= 63 and n == n.lower() and "_" not in n
