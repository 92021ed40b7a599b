"""Live ingest: records that arrive one message at a time (webhook bodies, MQTT messages) are
committed in small groups, so 200 events a second cost a few transactions a second instead of
200 runs. Each submitter waits for the commit of the group its records went into; only then is
an HTTP request answered or an MQTT message acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from .runner import IngestReport, IngestRunner, SourceReport, Stream

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What became of one submission: its sources' reports and its rejected records."""

    sources: list[SourceReport]
    rejections: list[dict] = field(default_factory=list)
    run: IngestReport | None = None

    @property
    def rejected(self) -> int:
        return sum(s.rejected for s in self.sources)


class Changes:
    """Wakes waiting subscribers (on any event loop) when a commit wrote new deviations, so a
    GraphQL subscription sees them without waiting out its polling interval."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def notify(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    async def wait(self, timeout: float) -> None:
        """Return when something changed or after ``timeout`` seconds, whichever is first."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.add(entry)
        try:
            await asyncio.wait_for(entry[1].wait(), timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters.discard(entry)


@dataclass
class _Job:
    streams: list[Stream]
    future: Future


class LiveIngest:
    """Group commit in front of an :class:`IngestRunner`.

    A worker thread takes the first waiting submission, gathers others that arrive within
    ``linger`` seconds (up to ``max_streams``), loads them as one run and resolves every
    submission's future with its own part of the report. If the store fails, every
    submission of that group gets the exception and nothing of it is acknowledged.
    """

    def __init__(
        self,
        runner: IngestRunner,
        linger: float = 0.05,
        max_streams: int = 1000,
        changes: Changes | None = None,
        on_commit: Callable[[IngestReport], None] | None = None,
    ) -> None:
        self.runner = runner
        self.linger = linger
        self.max_streams = max_streams
        self.changes = changes or Changes()
        self.on_commit = on_commit
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, streams: list[Stream]) -> Future:
        """Queue records for the next group; the future resolves to an :class:`Outcome`
        once they are committed (or raises what the store raised)."""
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="live-ingest", daemon=True)
                self._thread.start()
        future: Future = Future()
        self._queue.put(_Job(streams, future))
        return future

    def close(self) -> None:
        """Finish what is queued, then stop the worker."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        jobs = [first]
        count = len(first.streams)
        deadline = time.monotonic() + self.linger
        while count < self.max_streams:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                job = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
            count += len(job.streams)
        return jobs, False

    def _work(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            jobs, stopping = self._gather(first)
            try:
                report = self.runner.run_streams([s for job in jobs for s in job.streams])
            except Exception as error:  # the store failed: every submitter must know
                for job in jobs:
                    _settle(job.future, error=error)
                continue
            by_name = {source.path: source for source in report.sources}
            for job in jobs:
                names = {s.name for s in job.streams}
                outcome = Outcome(
                    [by_name[s.name] for s in job.streams if s.name in by_name],
                    [r for r in report.rejections if r["source"] in names],
                    report,
                )
                _settle(job.future, outcome)
            if report.new_deviations:
                self.changes.notify()
            if self.on_commit is not None:
                try:
                    self.on_commit(report)
                except Exception:  # a follow-up (workflows) failing must not stop ingest
                    log.exception("after-commit step failed for run %s", report.run_id)


def _settle(future: Future, result: Outcome | None = None, error: Exception | None = None) -> None:
    """Resolve a submission's future unless its submitter gave up (an HTTP client that hung
    up cancels it): its records are committed all the same, and the worker must go on."""
    if not future.set_running_or_notify_cancel():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
