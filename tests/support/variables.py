"""Airflow's Variables as a task reaches them (through the Execution API), kept in a dict: a task's
API is not at hand in the unit and emulator tiers. The distributed tier's fault matrix runs the real
ones (tests/system/distributed/test_fault_matrix.py)."""

from __future__ import annotations

from typing import Any

__all__ = ["variables_in_a_dict"]


def variables_in_a_dict(monkeypatch: Any) -> dict[str, str]:
    """Patch ``airflow.sdk.Variable``'s get, set and delete (through ``monkeypatch``) onto a dict,
    and return the dict."""
    from airflow.sdk import Variable

    store: dict[str, str] = {}
    monkeypatch.setattr(Variable, "get", lambda key, default=None, **_: store.get(key, default))
    monkeypatch.setattr(Variable, "set", lambda key, value, **_: store.__setitem__(key, value))
    monkeypatch.setattr(Variable, "delete", lambda key: store.pop(key, None))
    return store
