"""Admission: whether a request runs now, waits in the queue, or is refused, decided before any
response header is sent. Lives on the event loop (no locks); runs end from their own threads and
report back through ``loop.call_soon_threadsafe``.

A run holds its slot until its thread has really finished (a cancelled run may still be inside a
tool), so ``max_concurrency`` bounds the threads doing work, not just the open requests.

Every admitted request is counted once more when it leaves, so that ``/health``'s counters always
add up: ``admitted == running + queued`` + the outcomes of runs (``completed``, ``cancelled``,
``failed``, ``bad_request``, ``llm_error``) + the requests that never got a slot (``left_queue``: the
client went away while queued, or its request was cancelled, as Ray Serve does then;
``queue_timeout``: the deadline passed in the queue, answered 504).
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from typing import Any, Literal

from ._errors import APIError

Status = Literal["starting", "ready", "draining", "failed"]


class Admission:
    def __init__(self, max_concurrency: int, max_queue: int) -> None:
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.status: Status = "starting"
        self.failure: str | None = None
        self.running = 0
        self.queued = 0
        self.counts: Counter[str] = Counter()
        self._slots = asyncio.Semaphore(max_concurrency)
        self._mean_seconds = 1.0  # moving average of run time, for Retry-After

    # -- refusals ------------------------------------------------------------------------
    def check_available(self) -> None:
        """503 while the agent loads, after it failed to load, and while draining."""
        if self.status == "ready":
            return
        self.counts["unavailable"] += 1
        if self.status == "starting":
            raise APIError(503, "The server is starting (loading the agent); retry shortly.", code="starting",
                           retry_after=2)
        if self.status == "draining":
            raise APIError(503, "The server is shutting down and takes no new requests.", code="draining")
        raise APIError(503, f"The agent failed to load: {self.failure}", code="agent_failed")

    def retry_after(self) -> float:
        """Seconds until a slot is likely free: mean run time x (queued + 1) / slots, 1..60."""
        estimate = self._mean_seconds * (self.queued + 1) / self.max_concurrency
        return float(min(60, max(1, math.ceil(estimate))))

    def admit(self) -> None:
        """Take a place in the queue or raise 429 (queue full) / 503 (not ready)."""
        self.check_available()
        if self.running + self.queued >= self.max_concurrency + self.max_queue:
            self.counts["rejected"] += 1
            raise APIError(429, f"The server is busy ({self.running} running, {self.queued} queued); retry later.",
                           code="queue_full", retry_after=self.retry_after())
        self.queued += 1
        self.counts["admitted"] += 1

    # -- slots ---------------------------------------------------------------------------
    async def wait_slot(self, timeout: float) -> None:
        """Wait (FIFO) for a run slot; leaves the queue whatever happens. ``TimeoutError`` past ``timeout``."""
        try:
            async with asyncio.timeout(max(0.0, timeout)):
                await self._slots.acquire()
        except TimeoutError:
            self.counts["queue_timeout"] += 1
            raise
        except asyncio.CancelledError:
            self.counts["left_queue"] += 1
            raise
        finally:
            self.queued -= 1
        self.running += 1

    def release(self, seconds: float | None = None, outcome: str = "completed") -> None:
        """A run's thread has finished (call on the loop)."""
        self.running -= 1
        self.counts[outcome] += 1
        if seconds is not None:
            self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * seconds
        self._slots.release()

    @property
    def idle(self) -> bool:
        return self.running == 0 and self.queued == 0

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.status == "ready" else self.status, "running": self.running, "queued": self.queued,
            "max_concurrency": self.max_concurrency, "max_queue": self.max_queue, "counters": dict(self.counts),
            **({"error": self.failure} if self.failure else {}),
        }
