"""One watch per connection and job type in a triggerer, shared by every trigger waiting there.

X allows 150 requests per 15 minutes on each endpoint. Fifty jobs polled one by one every minute
would need five times that. The list endpoint answers for every recent job of a type at once, so
the triggers of one process that wait on jobs of one type share a watch:

- each round is one list request, and it updates every waiting trigger;
- a round is due when the most pressing trigger wants news: at its poll interval, at its job's
  estimated completion, or when a created job's upload window ends;
- rounds are never closer together than the list endpoint's rate-limit headers allow;
- a job the listing does not show is looked up on its own.

Each trigger hears of its job's changes of status (and logs them), and its event still comes
from its own loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator
from typing import ClassVar

from airflow_provider_xcompliance.client.jobs import ComplianceJob
from airflow_provider_xcompliance.client.retry import (
    TRANSIENT_ERRORS,
    next_poll_delay,
    poll_again_after,
    rate_limit_spacing,
)
from airflow_provider_xcompliance.exceptions import XComplianceError
from airflow_provider_xcompliance.hooks.compliance import XComplianceHook

log = logging.getLogger(__name__)

# Triggers woken at once in a round before the watch yields to the event loop: a round that
# woke a thousand triggers at once stalled the loop for over a second.
WAKE_BATCH = 100


class _Waiter:
    """One trigger's interest in one job: when it wants news, and the news delivered to it."""

    def __init__(self, job: ComplianceJob, poll_interval: float, now: float) -> None:
        self.job = job
        self.poll_interval = poll_interval
        self.news: asyncio.Queue[ComplianceJob | Exception] = asyncio.Queue()
        self.seen(job, now)

    def seen(self, job: ComplianceJob, now: float) -> None:
        self.job = job
        self.due = now + next_poll_delay(job, self.poll_interval)


class JobWatch:
    """Lists the jobs of ``job_type`` for the triggers of one connection in this event loop."""

    _watches: ClassVar[dict[tuple[int, str, str], JobWatch]] = {}

    def __init__(self, key: tuple[int, str, str]) -> None:
        self.key = key
        _, x_conn_id, self.job_type = key
        self.hook = XComplianceHook(x_conn_id=x_conn_id)
        self.waiters: list[_Waiter] = []
        self.changed = asyncio.Event()
        self.paced_until = 0.0  # loop time before which the list endpoint is not asked again
        self.runner: asyncio.Task[None] | None = None

    @classmethod
    def updates(
        cls, x_conn_id: str, job: ComplianceJob, poll_interval: float
    ) -> AsyncIterator[ComplianceJob]:
        """Each new status of ``job`` the shared watch sees, until one that has ended (the last).
        Raises what the API answered when it was a permanent error (a refused token, say)."""
        key = (id(asyncio.get_running_loop()), x_conn_id, str(job.type))
        watch = cls._watches.get(key) or cls._watches.setdefault(key, cls(key))
        return watch._updates(job, poll_interval)

    async def _updates(self, job: ComplianceJob, poll_interval: float) -> AsyncIterator[ComplianceJob]:
        loop = asyncio.get_running_loop()
        waiter = _Waiter(job, poll_interval, loop.time())
        self.waiters.append(waiter)
        self._watches.setdefault(self.key, self)
        if self.runner is None or self.runner.done():
            # A context of its own: the triggerer routes log lines by the trigger bound in the
            # context, and the rounds belong to no one trigger.
            self.runner = loop.create_task(self._run(), context=contextvars.Context())
        self.changed.set()
        try:
            while True:
                news = await waiter.news.get()
                if isinstance(news, Exception):
                    raise news
                yield news
                if news.has_ended:
                    return
        finally:
            self.waiters.remove(waiter)
            self.changed.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.waiters:
                self.changed.clear()
                wait = max(min(w.due for w in self.waiters), self.paced_until) - loop.time()
                if wait > 0:
                    try:  # a trigger that arrives or leaves changes what is due
                        await asyncio.wait_for(self.changed.wait(), wait)
                    except TimeoutError:
                        pass
                    continue
                try:
                    await self._round(loop)
                except Exception as error:  # a fault here must not leave the triggers waiting forever
                    log.exception("The watch of %s jobs failed", self.job_type)
                    for waiter in self.waiters:
                        waiter.news.put_nowait(XComplianceError(f"Watching the job failed: {error!r}"))
                    self.paced_until = loop.time() + self._shortest_interval()
        finally:
            if self._watches.get(self.key) is self:
                del self._watches[self.key]

    def _shortest_interval(self) -> float:
        return min((w.poll_interval for w in self.waiters), default=60.0)

    async def _round(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            listed = {job.id: job for job in await self.hook.alist_jobs(self.job_type)}
        except TRANSIENT_ERRORS as error:
            retry = poll_again_after(error, self._shortest_interval())
            log.warning("Listing %s jobs: %s; asking again in %.0f s", self.job_type, error, retry)
            self.paced_until = loop.time() + retry
            return
        except (XComplianceError, ValueError) as error:
            for waiter in self.waiters:
                waiter.news.put_nowait(error)
            self.paced_until = loop.time() + self._shortest_interval()
            return
        self.paced_until = loop.time() + rate_limit_spacing(self.hook.last_rate_limit)
        woken = 0
        for waiter in list(self.waiters):
            if woken >= WAKE_BATCH:  # let the loop's other work (timers, events) in between
                await asyncio.sleep(0)
                woken = 0
            job = listed.get(waiter.job.id)
            if job is None:
                if waiter.due > loop.time():
                    continue  # not listed, not due: its own lookup can wait
                try:
                    job = await self.hook.aget_job(waiter.job.id)
                except TRANSIENT_ERRORS:
                    waiter.seen(waiter.job, loop.time())  # ask again at its next turn
                    continue
                except (XComplianceError, ValueError) as error:
                    waiter.news.put_nowait(error)
                    continue
            changed = job.status != waiter.job.status
            waiter.seen(job, loop.time())
            if changed or job.has_ended:  # a trigger hears of changes only
                waiter.news.put_nowait(job)
                woken += 1
