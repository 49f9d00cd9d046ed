"""What the pytest-xdist workers of one run share, and the scheduler that keeps a group of tests on
one worker.

The controller makes a folder for the run (its path in ``XC_TEST_RUN_DIR``, which the workers
inherit): the ports handed out to any of them (tests/support/ports.py), and the group of each test
that must share a worker with others (``groups.json``, written by the workers as they collect).

pytest-xdist's ``--dist loadgroup`` sends the tests of one ``xdist_group`` to one worker by renaming
their node ids (``item._nodeid = "...@group"``); pytest 9.2 builds node ids otherwise, so that
rename has no effect any more and the groups are spread over every worker. :class:`GroupScheduling`
(``--dist loadgroup`` here, through tests/conftest.py) takes each test's group from ``groups.json``
instead; a test in no group is a scope of its own, as under ``--dist load``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["RUN_DIR_VARIABLE", "make_run_dir", "run_dir", "scheduler", "write_groups"]

RUN_DIR_VARIABLE = "XC_TEST_RUN_DIR"
_GROUPS = "groups.json"


def run_dir() -> Path | None:
    """The run's shared folder, or None outside a run that made one."""
    path = os.environ.get(RUN_DIR_VARIABLE)
    return Path(path) if path else None


def make_run_dir(config: Any) -> None:
    """Make the run's folder (in the controller, or a run without workers); removed at the end."""
    if hasattr(config, "workerinput") or RUN_DIR_VARIABLE in os.environ:
        return
    folder = tempfile.mkdtemp(prefix="xc-test-run-")
    os.environ[RUN_DIR_VARIABLE] = folder

    def remove() -> None:
        os.environ.pop(RUN_DIR_VARIABLE, None)
        shutil.rmtree(folder, ignore_errors=True)

    config.add_cleanup(remove)


def write_groups(groups: dict[str, str]) -> None:
    """Store ``{node id: group}`` for the scheduler (every worker collects the same tests and
    writes the same file; each replaces it whole)."""
    folder = run_dir()
    if folder is None:
        return
    fd, partial = tempfile.mkstemp(dir=folder, prefix=".groups-")
    with os.fdopen(fd, "w") as out:
        json.dump(groups, out)
    os.replace(partial, folder / _GROUPS)


def scheduler(config: Any, log: Any) -> Any:
    """A LoadScopeScheduling whose scope is a test's group (its own node id when in none)."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        _groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if "@" in nodeid.rsplit("]", 1)[-1]:  # a pytest-xdist that renames node ids again
                return nodeid.rsplit("@", 1)[-1]
            if self._groups is None:  # read once the workers have collected (schedule() asks then)
                folder = run_dir()
                path = folder / _GROUPS if folder else None
                if path is None or not path.exists():
                    return nodeid
                self._groups = json.loads(path.read_text())
            return self._groups.get(nodeid, nodeid)

    return GroupScheduling(config, log)
