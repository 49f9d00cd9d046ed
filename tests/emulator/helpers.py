"""Small client helpers shared by the emulator tests (plain ``requests``, no provider code)."""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from xml.etree import ElementTree

import requests

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.000Z$")


def api_session(emu) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {emu.token}"
    return s


def create_job(s: requests.Session, emu, job_type: str = "tweets", **fields) -> dict:
    r = s.post(f"{emu.base_url}/2/compliance/jobs", json={"type": job_type, **fields})
    assert r.status_code == 200, r.text
    return r.json()["data"]


def get_job(s: requests.Session, emu, job_id: str) -> dict:
    r = s.get(f"{emu.base_url}/2/compliance/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return r.json()["data"]


def wait_status(
    s: requests.Session, emu, job_id: str, wanted=("complete", "failed"), timeout: float = 15.0
) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = get_job(s, emu, job_id)
        if job["status"] in wanted:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']}")
        time.sleep(0.02)


def put_ids(upload_url: str, data, **headers) -> requests.Response:
    return requests.put(upload_url, data=data, headers={"Content-Type": "text/plain", **headers})


def xml_error(response: requests.Response) -> dict:
    assert response.headers["Content-Type"].startswith("application/xml"), response.headers
    root = ElementTree.fromstring(response.content)
    assert root.tag == "Error"
    return {child.tag: child.text for child in root}


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def query_params(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def with_query(url: str, **changes) -> str:
    """The URL with query parameters replaced (value None removes one), order kept."""
    parts = urllib.parse.urlsplit(url)
    params = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    out = []
    for key, value in params:
        if key in changes:
            if changes[key] is not None:
                out.append((key, changes.pop(key)))
            else:
                changes.pop(key)
        else:
            out.append((key, value))
    out.extend((k, v) for k, v in changes.items() if v is not None)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(out, safe="/")))


def tweet_ids(count: int, start: int = 1_400_000_000_000_000_000) -> list[str]:
    return [str(start + i) for i in range(count)]
