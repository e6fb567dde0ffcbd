"""Load limits: a per-caller rate limit (429) and a bounded queue in front of the expensive work (503).

The work queue admits at most ``max_active + max_waiting`` requests; the rest are refused at once with a
Retry-After estimated from recent work times, so a burst cannot pile up threads, memory or latency. Work runs
in the queue's own threads; a request that times out stops waiting at once, and its work is told to stop at
its next record (it keeps its slot until then, so the bound holds).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

from imgorigin.service.errors import ServiceError

T = TypeVar("T")
#: Callers remembered by the rate limiter before full buckets are forgotten.
MAX_TRACKED_CALLERS = 10_000


class RateLimiter:
    """Token buckets per caller: ``per_minute`` requests on average, bursts of up to ``burst``."""

    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = per_minute / 60.0, float(burst), clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, caller: str) -> None:
        """Take one request from the caller's bucket, or refuse with 429 and the seconds until the next one."""
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(caller, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1:
                self._buckets[caller] = (tokens, now)
                wait = math.ceil((1 - tokens) / self.rate)
                raise ServiceError(
                    429, "rate_limited", f"too many requests; retry in {wait} s", headers={"Retry-After": str(wait)}
                )
            self._buckets[caller] = (tokens - 1, now)
            if len(self._buckets) > MAX_TRACKED_CALLERS:
                self._forget_full(now)

    def _forget_full(self, now: float) -> None:
        """Drop callers whose buckets have refilled: forgetting them changes nothing."""
        for caller, (tokens, last) in list(self._buckets.items()):
            if tokens + (now - last) * self.rate >= self.burst:
                del self._buckets[caller]


class WorkQueue:
    """At most ``max_active`` pieces of work at once and ``max_waiting`` more in line; the rest get 503."""

    def __init__(self, max_active: int, max_waiting: int) -> None:
        self.capacity = max_active + max_waiting
        self.max_active = max_active
        self._slots = threading.Semaphore(max_active)
        self._lock = threading.Lock()
        self._admitted = 0
        self._waiting = 0  # requests waiting for a slot: background work lets them go first
        self._mean_seconds = 1.0
        self._pool = ThreadPoolExecutor(max_workers=self.capacity, thread_name_prefix="imgorigin-work")

    @property
    def admitted(self) -> int:
        """Pieces of work running or waiting now."""
        return self._admitted

    def _admit(self) -> None:
        with self._lock:
            if self._admitted >= self.capacity:
                wait = max(1, math.ceil(self._mean_seconds * self._admitted / self.max_active))
                raise ServiceError(
                    503,
                    "busy",
                    f"the server is at its limit of {self.capacity} requests in progress; retry in {wait} s",
                    headers={"Retry-After": str(wait)},
                )
            self._admitted += 1

    def _release(self, seconds: float | None) -> None:
        with self._lock:
            self._admitted -= 1
            if seconds is not None:
                self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * seconds

    async def run(self, work: Callable[[threading.Event], T], timeout: float) -> T:
        """Run ``work(cancel)`` in a slot within ``timeout`` seconds (waiting included), or refuse (503, 504)."""
        self._admit()
        cancel = threading.Event()
        deadline = time.monotonic() + timeout
        future = asyncio.get_running_loop().run_in_executor(self._pool, self._in_slot, work, cancel, deadline)
        try:
            return await asyncio.wait_for(future, timeout)
        except (TimeoutError, asyncio.CancelledError):
            cancel.set()
            raise

    def _in_slot(self, work: Callable[[threading.Event], T], cancel: threading.Event, deadline: float) -> T:
        """Wait for a slot (never past the deadline), then work; the admission ends when the thread does."""
        seconds = None
        try:
            with self._lock:
                self._waiting += 1
            try:
                acquired = self._slots.acquire(timeout=max(0.0, deadline - time.monotonic()))
            finally:
                with self._lock:
                    self._waiting -= 1
            if not acquired:
                raise TimeoutError("no work slot before the request's deadline")
            try:
                start = time.monotonic()
                result = work(cancel)
                seconds = time.monotonic() - start
                return result
            finally:
                self._slots.release()
        finally:
            self._release(seconds)

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a slot for background work (jobs): waits until no request waits for one, never refused."""
        while self._waiting:
            time.sleep(0.01)
        with self._lock:
            self._admitted += 1
        self._slots.acquire()
        try:
            yield
        finally:
            self._slots.release()
            self._release(None)

    def close(self) -> None:
        """Stop accepting work; running work finishes in the background."""
        self._pool.shutdown(wait=False, cancel_futures=True)
