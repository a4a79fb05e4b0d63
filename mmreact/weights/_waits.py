"""Every wait on a weights server is bounded, whatever its client library does.

A hub that accepts connections and then never answers (a captive portal, a proxy that lost its
upstream, a stalled CDN node) is the case a per-socket timeout does not bound: the hub client
retries a read timeout with backoff, first asks for its own agent registry (3 s), and waits for
every thread of a pool. So mmreact runs such calls in a daemon thread and stops waiting on its own
clock; a call still running then is abandoned (it ends when the answer comes or the process exits;
nothing it wrote is used before it is checked to be complete). The thread pools such a call started
(the hub client downloads files in one) would still be joined when the interpreter exits, so the
process would wait for the hung server after all: their threads, daemon threads like the call's own,
are taken off ``concurrent.futures``' exit list when the call is abandoned (:func:`_let_go`).

- :func:`within`: a request for metadata (sizes, file lists) gives up after ``MMREACT_HUB_TIMEOUT``
  seconds (default :data:`HUB_TIMEOUT`), retries included.
- :func:`while_moving`: a download is abandoned once nothing has arrived for ``MMREACT_STALL_TIMEOUT``
  seconds (default :data:`STALL_TIMEOUT`); a slow download that keeps moving is never cut. What
  arrived stays in the cache, and the next pull goes on from there.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Hashable
from typing import TypeVar

from ..errors import ConfigError

T = TypeVar("T")

#: seconds a metadata request (sizes, the file list) may take, all retries included
HUB_TIMEOUT = 10.0
#: seconds a download may go without receiving anything before it is abandoned
STALL_TIMEOUT = 30.0
#: how often a download's progress is looked at
POLL_SECONDS = 0.25


class NoAnswer(Exception):
    """The server did not answer in time (``seconds``)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no answer within {seconds:g} s")
        self.seconds = seconds


class Stalled(Exception):
    """Nothing arrived for ``seconds``."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"nothing arrived for {seconds:g} s")
        self.seconds = seconds


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{name} must be a number of seconds above 0, not '{raw}'.")
    return value


def hub_timeout() -> float:
    """``MMREACT_HUB_TIMEOUT`` (read now), else :data:`HUB_TIMEOUT`."""
    return _seconds("MMREACT_HUB_TIMEOUT", HUB_TIMEOUT)


def stall_timeout() -> float:
    """``MMREACT_STALL_TIMEOUT`` (read now), else :data:`STALL_TIMEOUT`."""
    return _seconds("MMREACT_STALL_TIMEOUT", STALL_TIMEOUT)


def _pool_threads() -> set[threading.Thread]:
    from concurrent.futures import thread

    return set(getattr(thread, "_threads_queues", {}))


def _let_go(before: set[threading.Thread]) -> None:
    """Let the interpreter exit without joining the pool threads an abandoned call started (daemon
    threads that were not there before it; each still ends when its request does)."""
    from concurrent.futures import thread

    queues = getattr(thread, "_threads_queues", None)
    if queues is None:  # another Python: nothing to undo
        return
    for worker in list(queues):
        if worker not in before and worker.daemon:
            queues.pop(worker, None)


class _Call:
    """``call()`` running in a daemon thread; :attr:`outcome` is set when it returns or raises."""

    def __init__(self, call: Callable[[], T], name: str) -> None:
        self.outcome: tuple[bool, object] | None = None
        self.pools = _pool_threads()
        self.thread = threading.Thread(target=self._run, args=(call,), name=name, daemon=True)
        self.thread.start()

    def _run(self, call: Callable[[], object]) -> None:
        try:
            self.outcome = (True, call())
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            self.outcome = (False, exc)

    def result(self) -> object:
        assert self.outcome is not None
        ok, value = self.outcome
        if ok:
            return value
        assert isinstance(value, BaseException)
        raise value


def within(seconds: float, call: Callable[[], T], *, name: str = "mmreact-hub") -> T:
    """``call()``'s result (or its exception), or :class:`NoAnswer` after ``seconds``."""
    running = _Call(call, name)
    running.thread.join(seconds)
    if running.outcome is None:
        _let_go(running.pools)
        raise NoAnswer(seconds)
    return running.result()  # type: ignore[return-value]


def while_moving(call: Callable[[], T], progress: Callable[[], Hashable], stall: float, *,
                 name: str = "mmreact-download") -> T:
    """``call()``'s result (or its exception), or :class:`Stalled` once ``progress()`` (any value that
    changes while data arrives: bytes on disk, a counter) has not changed for ``stall`` seconds."""
    running = _Call(call, name)
    last = progress()
    moved = time.monotonic()
    while True:
        running.thread.join(min(POLL_SECONDS, stall))
        if running.outcome is not None:
            return running.result()  # type: ignore[return-value]
        now = progress()
        if now != last:
            last, moved = now, time.monotonic()
        elif time.monotonic() - moved >= stall:
            _let_go(running.pools)
            raise Stalled(stall)
