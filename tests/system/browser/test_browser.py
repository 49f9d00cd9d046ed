"""The Airflow UI in a real browser, as a new user meets it after ``./dev airflow``.

Debian's ``chromium`` (``/usr/bin/chromium``; ``.ci/run`` installs it), driven headless by
Playwright's sync API; no browser is ever downloaded (never ``playwright install``). Airflow is the
``dev_airflow`` fixture: ``demo.py --standalone``, the code path of ``./dev airflow``, shared with
tests/system/test_standalone.py. The tests log in with ``admin`` and the password from the file the demo
wrote, then use the UI only where a user would click: the connection form, the Test button, the
Trigger form. Afterwards the REST API and the file system say whether it worked.

A screenshot is saved at each step in ``.artifacts/browser/`` (ignored by git; the folder is
printed when the tests start). What the UI of 3.3.2 does that the tests rely on:

* The Test button lives in each row of Admin → Connections (not in the edit dialog). It posts the
  row as listed: password ``***`` and ``port`` as ``Number(port)``, 0 when none is stored; the
  API refuses a test whose port differs from the stored one unless the body holds a real
  password: "Test Connection Failed / Bad Request". The success toast shows for 2 s.
* The Trigger form labels a Param by its schema ``title`` and requires a field whose ``type``
  excludes null; "Unpause <dag> on trigger" is ticked by default for a paused DAG.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.dev_airflow import REPO, DevAirflow

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / ".artifacts" / "browser"
DAG_ID = "x_compliance_tweets"
TIMEOUT_MS = 30_000  # any single UI step
RUN_TIMEOUT = 300  # the triggered run of 20,000 IDs

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no {CHROMIUM}: apt-get install chromium"),
]


class Shots:
    """Numbered full-page screenshots in ARTIFACTS."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    def __call__(self, page: Any, name: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture(scope="module")
def shots(request: pytest.FixtureRequest) -> Shots:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"\nbrowser screenshots: {ARTIFACTS}")
    return Shots(ARTIFACTS)


@pytest.fixture(scope="module")
def page(dev_airflow: DevAirflow, shots: Shots) -> Iterator[Any]:
    """A logged-in page: admin, with the password read from the file (not from any log)."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        page = context.new_page()
        try:
            page.goto(dev_airflow.base_url)
            expect(page).to_have_url(re.compile(r"/auth/login"))
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(dev_airflow.admin_password())
            shots(page, "login")
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
            shots(page, "home")
            yield page
        finally:
            context.close()
            browser.close()


def _open_connections(page: Any, dev_airflow: DevAirflow) -> None:
    from playwright.sync_api import expect

    page.goto(dev_airflow.base_url + "/")
    page.get_by_role("button", name="Admin").click()
    page.get_by_role("menuitem", name="Connections").click()
    expect(page).to_have_url(re.compile(r"/connections$"))
    expect(_row(page, "x_compliance_default")).to_be_visible()


def _row(page: Any, conn_id: str) -> Any:
    return page.get_by_role("row").filter(has=page.get_by_role("cell", name=conn_id, exact=True))


def _test_button(page: Any, conn_id: str, outcome: str) -> Any:
    """Press the Test button of a connection's row; the toast "Test Connection <outcome>"."""
    _row(page, conn_id).get_by_role("button", name="Test Connection").click()
    return page.get_by_role("status").filter(has_text=f"Test Connection {outcome}")


def test_connection_form_shows_the_provider_fields(page: Any, dev_airflow: DevAirflow, shots: Shots) -> None:
    from playwright.sync_api import expect

    _open_connections(page, dev_airflow)
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("combobox", name="Connection Type").fill("X Compliance")
    expect(page.get_by_role("option")).to_have_text(
        ["X Compliance", "X Compliance (old type name x_compliance)"]
    )
    shots(page, "connection-types")
    page.get_by_role("option", name="X Compliance", exact=True).click()

    expect(dialog.get_by_role("textbox", name="API base URL")).to_have_attribute(
        "placeholder", "https://api.x.com"
    )
    expect(dialog.get_by_role("textbox", name="Bearer token")).to_be_visible()
    expect(dialog.get_by_role("spinbutton", name="Port")).to_be_visible()
    for hidden in ("Login", "Schema", "Host", "Password"):
        expect(dialog.get_by_text(hidden, exact=True)).to_have_count(0)
    shots(page, "connection-form-standard-fields")
    dialog.get_by_role("button", name="Extra Fields", exact=True).click()
    for label, default in (
        ("Request timeout (seconds)", "30"),
        ("Retries", "5"),
        ("Longest rate-limit wait (seconds)", "900"),
    ):
        expect(dialog.get_by_role("spinbutton", name=label)).to_have_value(default)
    expect(dialog.get_by_text("How long one HTTP request may take before it is retried.")).to_be_visible()
    shots(page, "connection-form-extra-fields")
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()


def test_test_button_succeeds_on_the_default_connection(
    page: Any, dev_airflow: DevAirflow, shots: Shots
) -> None:
    from playwright.sync_api import expect

    emulator_url, _ = dev_airflow.emulator()
    _open_connections(page, dev_airflow)
    row = _row(page, "x_compliance_default")
    expect(row).to_contain_text("xcompliance")  # stored in the database: listed, testable, editable
    toast = _test_button(page, "x_compliance_default", "Successful")
    expect(toast).to_contain_text(f"Connected to {emulator_url}: ")
    shots(page, "test-button-default-connection")

    row.get_by_role("button", name="Edit Connection").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("textbox", name="API base URL")).to_have_value("http://127.0.0.1")
    expect(dialog.get_by_role("spinbutton", name="Port")).to_have_value(emulator_url.rsplit(":", 1)[1])
    shots(page, "edit-default-connection")
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()


def test_a_connection_added_in_the_form_tests_ok_once_its_port_is_filled(
    page: Any, dev_airflow: DevAirflow, shots: Shots
) -> None:
    """What the README tells a user who adds the connection in the UI: fill in the port too."""
    from playwright.sync_api import expect

    emulator_url, token = dev_airflow.emulator()
    host, port = emulator_url.rsplit(":", 1)
    _open_connections(page, dev_airflow)
    try:
        for conn_id, with_port in (("x_browser_no_port", False), ("x_browser_with_port", True)):
            page.get_by_role("button", name="Add Connection").click()
            dialog = page.get_by_role("dialog")
            dialog.get_by_role("textbox", name="Connection ID").fill(conn_id)
            dialog.get_by_role("combobox", name="Connection Type").fill("X Compliance")
            page.get_by_role("option", name="X Compliance", exact=True).click()
            dialog.get_by_role("textbox", name="API base URL").fill(host)
            dialog.get_by_role("textbox", name="Bearer token").fill(token)
            if with_port:
                dialog.get_by_role("spinbutton", name="Port").fill(port)
            shots(page, f"add-{conn_id}")
            dialog.get_by_role("button", name="Save").click()
            expect(dialog).to_be_hidden()
            expect(_row(page, conn_id)).to_be_visible()
            if with_port:
                expect(_test_button(page, conn_id, "Successful")).to_contain_text(
                    f"Connected to {emulator_url}: "
                )
            else:  # Airflow 3.3.2: the list posts port 0 for a connection stored without one
                expect(_test_button(page, conn_id, "Failed")).to_contain_text("Bad Request")
            shots(page, f"test-button-{conn_id}")
    finally:
        for conn_id in ("x_browser_no_port", "x_browser_with_port"):
            dev_airflow.request("DELETE", f"/api/v2/connections/{conn_id}")


def test_trigger_form_runs_the_dag_and_the_results_land_where_the_form_said(
    page: Any, dev_airflow: DevAirflow, shots: Shots
) -> None:
    from playwright.sync_api import expect

    folder = dev_airflow.workdir / "browser"
    folder.mkdir(exist_ok=True)
    ids = folder / "my-tweet-ids.txt"
    shutil.copyfile(dev_airflow.ids_file(), ids)
    results = folder / "my-results"
    conf = {"job_type": "tweets", "ids_path": ids.as_uri(), "results_path": results.as_uri() + "/"}
    was_paused = dev_airflow.api("GET", f"/api/v2/dags/{DAG_ID}")["is_paused"]

    page.goto(f"{dev_airflow.base_url}/dags/{DAG_ID}")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name=f"Trigger Dag - {DAG_ID}")).to_be_visible()
    if was_paused:  # left ticked: unpausing starts no run of its own (the examples' schedule)
        expect(dialog.get_by_role("checkbox", name=f"Unpause {DAG_ID} on trigger")).to_be_checked()
    for title in ("Job type", "IDs file", "Results folder"):  # each with the mark of a required field
        expect(dialog.locator("label").filter(has_text=re.compile(rf"^{title}\W*$"))).to_be_visible()
    expect(dialog.get_by_text("ids_path", exact=True)).to_have_count(0)
    trigger = dialog.get_by_role("button", name="Trigger", exact=True)

    job_type = dialog.get_by_role("combobox", name="Job type")
    job_type.focus()
    page.keyboard.press("Backspace")  # clear the drop-down, as its x does
    expect(dialog.get_by_text("This field is required")).to_be_visible()
    expect(trigger).to_be_disabled()
    shots(page, "trigger-form-job-type-cleared")
    job_type.click()
    page.get_by_role("option", name="tweets", exact=True).click()
    expect(dialog.get_by_text("This field is required")).to_have_count(0)

    dialog.locator("#element_ids_path").fill(conf["ids_path"])
    dialog.locator("#element_results_path").fill(conf["results_path"])
    expect(trigger).to_be_enabled()
    shots(page, "trigger-form-filled")
    trigger.click()
    expect(dialog).to_be_hidden()
    shots(page, "triggered")

    run_id = _run_with_conf(dev_airflow, conf)
    run = dev_airflow.wait_run(DAG_ID, run_id, RUN_TIMEOUT)
    page.goto(f"{dev_airflow.base_url}/dags/{DAG_ID}/runs/{run_id}")
    expect(page.get_by_role("heading", name=run_id)).to_be_visible()
    expect(page.get_by_text("Success").first).to_be_visible()
    shots(page, "run-finished")
    assert run["state"] == "success", f"{dev_airflow.task_logs(DAG_ID, run_id)}\n{dev_airflow.tail()}"
    assert run["run_type"] == "manual" and run["conf"] == conf, run
    assert dev_airflow.api("GET", f"/api/v2/dags/{DAG_ID}")["is_paused"] is False
    scheduled = dev_airflow.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns", params={"run_type": "scheduled"})
    assert scheduled["total_entries"] == 0, f"unpausing started a run of its own: {scheduled}"

    job_id = dev_airflow.xcom(DAG_ID, run_id, "compliance.submit")
    landed = sorted(results.iterdir())
    assert [p.name for p in landed] == [f"tweets-{job_id}.jsonl"], landed
    lines = landed[0].read_text().splitlines()
    expected = dev_airflow.expected_results(ids)
    assert expected and len(lines) == len(expected), (len(lines), len(expected))
    assert [json.loads(line) for line in lines] == expected


def _run_with_conf(dev_airflow: DevAirflow, conf: dict[str, str], timeout: float = 30) -> str:
    """The id of the manual run the form created (the one with exactly that conf)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = dev_airflow.api(
            "GET", f"/api/v2/dags/{DAG_ID}/dagRuns", params={"run_type": "manual", "limit": 100}
        )
        ours = [r["dag_run_id"] for r in runs["dag_runs"] if r["conf"] == conf]
        if ours:
            assert len(ours) == 1, runs
            return ours[0]
        assert time.monotonic() < deadline, f"no run with conf {conf}: {runs}"
        time.sleep(0.5)
