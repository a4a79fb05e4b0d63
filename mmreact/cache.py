"""Process-wide result cache for tools: image content hash + tool + arguments -> observation.

Bounded in memory (LRU). Set ``MMREACT_CACHE_DIR`` (or call :func:`configure`) to also persist
entries on disk as small JSON files, so a later process re-runs no model either.

A result being computed is shared too (:meth:`ResultCache.compute`): a second request for the
same key while the first one runs (a prefetch job and the model's own call, or two chats asking
the same expert about the same image) waits for it instead of running the model twice. Only
successes are shared and stored; a failed or failing computation is a miss, and the waiter runs
the tool itself.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Literal

from ._hashing import digest
from .observation import Observation


class ResultCache:
    def __init__(self, max_entries: int = 2048, directory: str | Path | None = None) -> None:
        self.max_entries = max_entries
        self.directory = Path(directory).expanduser() if directory else None
        self._mem: OrderedDict[str, Observation] = OrderedDict()
        self._lock = threading.Lock()
        self._running: dict[str, Future[Observation]] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(tool: str, version: str, arguments: dict[str, Any]) -> str:
        from .images import Image

        parts = {k: (f"sha256:{v.sha256}" if isinstance(v, Image) else v) for k, v in arguments.items()}
        blob = json.dumps([tool, version, parts], sort_keys=True, default=repr)
        return digest(blob, 64)

    def get(self, key: str) -> Observation | None:
        with self._lock:
            obs = self._mem.get(key)
            if obs is not None:
                self._mem.move_to_end(key)
                self.hits += 1
                return obs
        if self.directory is not None:
            path = self.directory / f"{key}.json"
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                obs = Observation(text=data["text"], artifact=data.get("artifact"), error=False)
            except (OSError, ValueError, KeyError, TypeError):
                obs = None
            if obs is not None:
                self._put_mem(key, obs)
                with self._lock:
                    self.hits += 1
                return obs
        with self._lock:
            self.misses += 1
        return None

    def compute(self, key: str, produce: Callable[[], Observation]
                ) -> tuple[Observation, Literal["computed", "cache", "waited"]]:
        """The cached observation for ``key``, the one another thread is computing right now (waited
        for), or ``produce()``'s, stored when it succeeds. Says which of the three it was."""
        while True:
            obs = self.get(key)
            if obs is not None:
                return obs, "cache"
            with self._lock:
                running = self._running.get(key)
                if running is None:
                    mine: Future[Observation] = Future()
                    self._running[key] = mine
            if running is None:
                break
            try:
                obs = running.result()
            except BaseException:  # noqa: BLE001 - the other computation failed: a miss, run it here
                continue
            if not obs.error:
                return obs, "waited"
            with self._lock:  # it failed gently: run it here (once the other one has let go)
                if self._running.get(key) is running:
                    del self._running[key]
        try:
            obs = produce()
            # Stored before it stops counting as running: a caller arriving in between would find
            # neither, and run the tool a second time.
            self.put(key, obs)
        except BaseException as exc:
            mine.set_exception(exc)
            raise
        finally:
            with self._lock:
                if self._running.get(key) is mine:
                    del self._running[key]
        mine.set_result(obs)
        return obs, "computed"

    def running(self) -> int:
        """How many computations are in flight right now."""
        with self._lock:
            return len(self._running)

    def put(self, key: str, obs: Observation) -> None:
        if obs.error:
            return  # failures are not cached: weights may be installed later
        self._put_mem(key, obs)
        if self.directory is not None:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                tmp = self.directory / f".{key}.{os.getpid()}.{threading.get_ident()}.tmp"
                tmp.write_text(json.dumps({"text": obs.text, "artifact": obs.artifact}), encoding="utf-8")
                os.replace(tmp, self.directory / f"{key}.json")
            except (OSError, TypeError, ValueError):
                pass  # the disk cache is best effort; the in-memory one still holds the entry

    def _put_mem(self, key: str, obs: Observation) -> None:
        with self._lock:
            self._mem[key] = obs
            self._mem.move_to_end(key)
            while len(self._mem) > self.max_entries:
                self._mem.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._mem.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._mem)


_cache: ResultCache | None = None
_cache_lock = threading.Lock()


def result_cache() -> ResultCache:
    """The shared cache (created on first use from ``MMREACT_CACHE_DIR`` / ``MMREACT_CACHE_SIZE``)."""
    global _cache
    with _cache_lock:
        if _cache is None:
            _cache = ResultCache(
                max_entries=int(os.environ.get("MMREACT_CACHE_SIZE", "2048")),
                directory=os.environ.get("MMREACT_CACHE_DIR") or None,
            )
        return _cache


def configure(max_entries: int = 2048, directory: str | Path | None = None) -> ResultCache:
    """Replace the shared cache (e.g. to persist it in ``directory``)."""
    global _cache
    with _cache_lock:
        _cache = ResultCache(max_entries=max_entries, directory=directory)
        return _cache
