"""Run systems over eval items, one resumable JSON line per (system, item).

A *system* is anything with ``run(question, images) -> result``: the result is a string, or an
object with ``.answer`` (``None`` when there is none) and optionally ``.trace`` (an
:class:`mmreact.trace.Trace`-like object with ``steps``, ``llm_seconds``, ``tokens`` and
``status``). :class:`mmreact.Agent` and the end-to-end backends of :mod:`mmreact.mllm` both fit.
``images`` are absolute file paths.

Decisions:

- ``results.jsonl`` in ``out_dir`` is append-only. Each line is written whole, flushed and
  fsync'd under a lock, so a killed run loses at most the item in flight. On restart
  (``resume=True``) the lines already there are read, an unterminated last line (a torn write)
  is cut off, and the (system, item) pairs already recorded are skipped; nothing is lost or
  run twice. ``resume=False`` starts the file afresh.
- A system that raises on an item is recorded with status ``error`` and a one-line message; the
  run goes on. Statuses: ``answered``, the trace's own status when there was no answer
  (``max_steps``, ``too_many_errors``), ``no_answer``, ``error``, ``score_error`` (the scorer,
  e.g. an LLM judge, failed; the score is then 0).
- Systems run one after another, so their latencies do not interfere; within a system, items
  run on ``concurrency`` threads. A system (or its ``.llm``) that sets ``max_concurrency``
  caps that (set it to 1 for a model that must not be called from two threads at once).
- ``seconds`` is wall-clock time around ``system.run`` (image loading included); ``llm_calls``
  is the number of steps in the trace.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import ConfigError, one_line
from .dataset import EvalItem
from .scorers import Scorer, get_scorer, score_item

RESULTS_FILE = "results.jsonl"


class System(Protocol):
    def run(self, question: str, images: Sequence[str]) -> Any: ...


@dataclass(frozen=True, slots=True)
class ItemResult:
    """One line of ``results.jsonl``."""

    system: str
    item: str
    prediction: str | None
    score: float
    status: str
    seconds: float
    llm_seconds: float | None = None
    llm_calls: int | None = None
    tokens: int | None = None
    error: str | None = None
    capabilities: tuple[str, ...] = field(default=())

    def to_json(self) -> str:
        data = asdict(self)
        data["capabilities"] = list(self.capabilities)
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ItemResult:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["capabilities"] = tuple(known.get("capabilities") or ())
        return cls(**known)


# -- results file ------------------------------------------------------------------------------
def read_results(path: str | Path, *, repair: bool = True) -> list[ItemResult]:
    """Every complete line of a results file, in order. An unterminated last line (a write
    that was cut off) is ignored and, with ``repair``, cut from the file."""
    p = Path(path)
    if not p.exists():
        return []
    data = p.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data) and repair:
        with open(p, "r+b") as f:
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
    out = []
    for lineno, raw in enumerate(data[:end].splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            out.append(ItemResult.from_dict(json.loads(raw)))
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError, AttributeError):
            raise ConfigError(f"{p}, line {lineno}: not a result line; delete that line (or the file) "
                              "to go on.") from None
    return out


class _Writer:
    """Appends result lines, whole, flushed and fsync'd, one thread at a time."""

    def __init__(self, path: Path) -> None:
        self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._lock = threading.Lock()

    def write(self, record: ItemResult) -> None:
        line = record.to_json() + "\n"
        with self._lock:
            self._f.write(line)
            self._f.flush()
            os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


# -- systems -----------------------------------------------------------------------------------
def _is_agent_spec(spec: str) -> bool:
    return spec.strip() == "agent" or spec.strip().startswith("agent:")


def load_system(spec: str) -> System:
    """A system from a spec: :func:`mmreact.mllm.load_system` when that exists, else
    ``agent`` / ``agent:LLMSPEC`` -> :class:`mmreact.Agent` with every tool ready here."""
    try:
        mllm = importlib.import_module("mmreact.mllm")
    except ModuleNotFoundError as exc:
        if exc.name != "mmreact.mllm":
            raise
        mllm = None
    loader = getattr(mllm, "load_system", None)
    if loader is not None:
        try:
            return loader(spec)
        except ConfigError:
            if not _is_agent_spec(spec):
                raise
    if not _is_agent_spec(spec):
        raise ConfigError(f"Unknown system spec '{spec}'; use agent or agent:LLMSPEC.")
    from ..agent import Agent

    _, _, llm = spec.strip().partition(":")
    return Agent(llm=llm or None)


_NAME_RE = re.compile(r"^([A-Za-z0-9_.\-]+)=(.+)$")


def parse_system_args(specs: Iterable[str]) -> dict[str, str]:
    """``["agent:x", "llava=mllm:..."]`` -> ``{name: spec}``; a name defaults to its spec."""
    out: dict[str, str] = {}
    for raw in specs:
        text = raw.strip()
        m = _NAME_RE.match(text)
        name, spec = (m.group(1), m.group(2).strip()) if m else (text, text)
        if not spec:
            raise ConfigError("A --system value is empty; give a spec such as agent or agent:LLMSPEC.")
        if name in out:
            raise ConfigError(f"The system name '{name}' is given twice; name them apart with NAME=SPEC.")
        out[name] = spec
    if not out:
        raise ConfigError("Give at least one --system to evaluate.")
    return out


def _workers(system: Any, requested: int) -> int:
    limit = getattr(system, "max_concurrency", None)
    if limit is None:
        limit = getattr(getattr(system, "llm", None), "max_concurrency", None)
    return max(1, min(requested, int(limit)) if limit else requested)


# -- one item ----------------------------------------------------------------------------------
def _trace_stats(trace: Any) -> dict[str, Any]:
    if trace is None:
        return {}
    steps = getattr(trace, "steps", None)
    return {"llm_seconds": getattr(trace, "llm_seconds", None),
            "llm_calls": len(steps) if steps is not None else None,
            "tokens": getattr(trace, "tokens", None)}


def run_item(name: str, system: System, item: EvalItem, scorer: Scorer) -> ItemResult:
    """Run one system on one item and score it; failures become an ``error`` record."""

    def record(**fields: Any) -> ItemResult:
        return ItemResult(system=name, item=item.id, capabilities=item.capabilities, **fields)

    t0 = time.perf_counter()
    try:
        out = system.run(item.question, list(item.images))
    except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
        return record(prediction=None, score=0.0, status="error", seconds=time.perf_counter() - t0,
                      error=one_line(exc), **_trace_stats(getattr(exc, "trace", None)))
    seconds = time.perf_counter() - t0
    prediction: str | None
    if isinstance(out, str):
        prediction, trace = out, None
    elif hasattr(out, "answer"):
        prediction = None if out.answer is None else str(out.answer)
        trace = getattr(out, "trace", None)
    else:
        return record(prediction=None, score=0.0, status="error", seconds=seconds,
                      error=f"the system returned a {type(out).__name__}, not a string or a result with .answer")
    stats = _trace_stats(trace)
    if prediction is None:
        status = str(getattr(trace, "status", None) or "no_answer")
        return record(prediction=None, score=0.0, status=status, seconds=seconds,
                      error=getattr(trace, "message", None), **stats)
    try:
        value = score_item(scorer, prediction, item)
    except Exception as exc:  # noqa: BLE001 - a judge that fails is recorded, not raised
        return record(prediction=prediction, score=0.0, status="score_error", seconds=seconds,
                      error=one_line(exc), **stats)
    return record(prediction=prediction, score=value, status="answered", seconds=seconds, **stats)


# -- the run -----------------------------------------------------------------------------------
def run_eval(
    items: Sequence[EvalItem],
    systems: Mapping[str, System],
    out_dir: str | Path,
    concurrency: int = 1,
    resume: bool = True,
    *,
    scorer: str | Scorer | None = None,
    retry_errors: bool = False,
    progress: bool = True,
) -> list[ItemResult]:
    """Evaluate every system on every item; return one result per (system, item), in order.

    Args:
        scorer: overrides every item's own scorer (a name such as ``"judge:openai:gpt-4o"``).
        retry_errors: on resume, run again the pairs whose last record is an ``error``.
    """
    if not systems:
        raise ConfigError("Give at least one system to evaluate.")
    if concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, got {concurrency}.")
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ConfigError(f"Two eval items share the id '{dup}'; ids must be unique.")
    override = get_scorer(scorer) if scorer is not None else None
    scorers = {it.id: override or get_scorer(it.scorer) for it in items}

    out = Path(out_dir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"Cannot create the output folder {out}: {exc.strerror or exc}.") from None
    path = out / RESULTS_FILE
    if not resume and path.exists():
        path.unlink()
    latest: dict[tuple[str, str], ItemResult] = {}
    for r in read_results(path):
        latest[(r.system, r.item)] = r

    from tqdm.auto import tqdm

    writer = _Writer(path)
    lock = threading.Lock()

    def task(name: str, system: System, item: EvalItem, bar: Any) -> None:
        record = run_item(name, system, item, scorers[item.id])
        writer.write(record)
        with lock:
            latest[(name, item.id)] = record
        bar.update(1)

    try:
        for name, system in systems.items():
            def pending(key: tuple[str, str]) -> bool:
                r = latest.get(key)
                return r is None or (retry_errors and r.status == "error")

            todo = [it for it in items if pending((name, it.id))]
            with tqdm(total=len(items), initial=len(items) - len(todo), desc=name, unit="item",
                      disable=not progress, dynamic_ncols=True) as bar:
                workers = _workers(system, concurrency)
                if workers == 1:
                    for it in todo:
                        task(name, system, it, bar)
                    continue
                pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"eval-{name}")
                try:
                    futures = [pool.submit(task, name, system, it, bar) for it in todo]
                    wait(futures)
                    for f in futures:
                        f.result()  # re-raise a bug in the harness itself
                finally:
                    pool.shutdown(wait=True, cancel_futures=True)
    finally:
        writer.close()
    return [latest[(name, it.id)] for name in systems for it in items if (name, it.id) in latest]
