"""Summaries of JSON Lines results, fed block by block."""

import json

import pytest

from airflow_provider_xcompliance.exceptions import InvalidResultsError
from airflow_provider_xcompliance.results import RUN_SIZE, ResultsSummary

LINES = [
    {
        "id": "1265324480517361664",
        "action": "delete",
        "created_at": "2019-10-29T17:02:47.000Z",
        "redacted_at": "2020-07-29T17:02:47.000Z",
        "reason": "deleted",
    },
    {
        "id": "1265324480517361664",
        "action": "delete",
        "created_at": "2019-10-29T17:02:47+00:00",
        "reason": "deleted",
    },
    {"id": "20", "action": "scrub_geo", "reason": "scrub_geo"},
    {"id": "21", "action": "future_action", "reason": "a_new_reason"},
]


def test_summary_counts_in_any_block_cut():
    data = b"".join(json.dumps(line).encode() + b"\n" for line in LINES)
    for cut in (0, 1, 50, len(data) - 1, len(data)):
        summary = ResultsSummary("r")
        summary.feed(data[:cut])
        summary.feed(data[cut:])
        summary.finish()
        assert summary.as_dict() == {
            "lines": 4,
            "bytes": len(data),
            "by_action": {"delete": 2, "future_action": 1, "scrub_geo": 1},
            "by_reason": {"a_new_reason": 1, "deleted": 2, "scrub_geo": 1},
        }


def test_empty_results_mean_nothing_to_do():
    summary = ResultsSummary("r")
    summary.finish()
    assert summary.as_dict() == {"lines": 0, "bytes": 0, "by_action": {}, "by_reason": {}}


def test_bad_line_is_reported_with_its_number():
    summary = ResultsSummary("results of job 7")
    summary.feed(b'{"id": "1", "reason": "deleted"}\n\n{"id": "2"}\n<html>')
    with pytest.raises(InvalidResultsError, match=r"results of job 7, line 4: '<html>'"):
        summary.finish()


def test_a_bad_line_deep_in_a_block_is_reported_with_its_number():
    """A block is decoded in runs of lines (RUN_SIZE bytes or so): the number counts every run
    before the broken one, blank lines included."""
    good = b'{"id":"1200000000000000001","action":"delete","reason":"deleted"}\n'
    count = 3 * RUN_SIZE // len(good)  # the bad line sits in the fourth run
    summary = ResultsSummary("results of job 7")
    with pytest.raises(InvalidResultsError, match=rf"results of job 7, line {count + 3}: '<html>'"):
        summary.feed(good * (count // 2) + b"\n" + good * (count - count // 2) + b"\n<html>\n" + good)
    summary = ResultsSummary("results of job 7")
    summary.feed(good * count)
    assert summary.as_dict()["lines"] == count and summary.as_dict()["by_reason"] == {"deleted": count}


def test_documented_values_unknown_values_and_missing_fields_count_alike():
    """The documented values take the fast decoder; a block with any other value, or a null,
    is decoded again leniently; a missing action or reason counts as "unknown" either way."""
    known = [
        {"id": "1", "action": "delete", "reason": "deleted"},
        {"id": "2", "action": "delete", "reason": "bounced"},
        {"id": "3", "reason": "deactivated"},
        {"id": "4", "action": "scrub_geo"},
    ]
    odd = [{"id": "5", "action": None, "reason": 3}, {"id": "6", "action": "delete", "reason": "x"}]
    counts = {}
    for lines in (known, known + odd):
        summary = ResultsSummary("r")
        summary.feed(b"".join(json.dumps(line).encode() + b"\n" for line in lines))
        summary.finish()
        counts[len(lines)] = summary.as_dict()
    assert counts[4]["by_action"] == {"delete": 2, "scrub_geo": 1, "unknown": 1}
    assert counts[4]["by_reason"] == {"bounced": 1, "deactivated": 1, "deleted": 1, "unknown": 1}
    assert counts[6]["by_action"] == {"None": 1, "delete": 3, "scrub_geo": 1, "unknown": 1}
    assert counts[6]["by_reason"] == {
        "3": 1,
        "bounced": 1,
        "deactivated": 1,
        "deleted": 1,
        "unknown": 1,
        "x": 1,
    }
