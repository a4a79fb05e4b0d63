"""Run systems over eval items, one resumable JSON line per (system, item).

A *system* is anything with ``run(question, images) -> result``: the result is a string, or an
object with ``.answer`` (``None`` when there is none) and optionally ``.trace`` (an
:class:`mmreact.trace.Trace`-like object with ``steps``, ``llm_seconds``, ``llm_wait_seconds``,
``tokens`` and ``status``). :class:`mmreact.Agent` and the end-to-end backends of
:mod:`mmreact.mllm` both fit. ``images`` are absolute file paths.

Decisions:

- ``results.jsonl`` in ``out_dir`` is append-only. Each line is written whole, flushed and
  fsync'd under a lock, so a killed run loses at most the item in flight. On restart
  (``resume=True``) the lines already there are read, an unterminated last line (a torn write)
  is cut off, and for each (system, item) pair the newest line counts. ``resume=False`` starts
  the file afresh.
- Every line carries a fingerprint of what produced it (:mod:`.fingerprint`: the system's
  settings, mmreact's version, the scorer and its rules' version, the item's question, image
  bytes, answers and choices). A pair whose saved fingerprint matches is skipped. When it does
  not, the run refuses, in one sentence naming what changed, unless told what to do:
  ``rescore=True`` scores the saved prediction again when only the scorer or the answers/choices
  changed (no system runs), ``rerun=True`` runs the changed pairs again. Old and new results are
  never mixed.
- A system that raises on an item is recorded with status ``error`` and a one-line message; the
  run goes on. Statuses: ``answered``, the trace's own status when there was no answer
  (``max_steps``, ``too_many_errors``), ``no_answer``, ``error``, ``score_error`` (the scorer,
  e.g. an LLM judge, failed; the score is then 0).
- Systems run one after another, so their latencies do not interfere; within a system, items
  run on ``concurrency`` threads. A system (or its ``.llm``) that sets ``max_concurrency``
  caps that (set it to 1 for a model that must not be called from two threads at once).
- Latency (:data:`LATENCY_NOTE`): before a system's first item, its ``load()`` (when it has one:
  :meth:`mmreact.Agent.load`, :meth:`mmreact.mllm.EndToEndSystem.load`) loads its models, timed
  and written to ``loads.jsonl``, reported apart. ``seconds`` is then the wall-clock time of
  ``system.run`` (image loading, LLM and tool time) minus ``wait_seconds``, the time its LLM calls
  waited for a model lock shared with other threads (``trace.llm_wait_seconds``; with ``-j 1``
  nothing waits). ``llm_seconds`` excludes that wait too; ``llm_calls`` is the number of steps
  the model wrote (a step the grammar forced, written by the engine without calling the model,
  is not one).
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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from ..errors import ConfigError, one_line
from . import fingerprint as fpr
from .dataset import EvalItem
from .scorers import Scorer, get_scorer, score_item

RESULTS_FILE = "results.jsonl"
LOADS_FILE = "loads.jsonl"
#: Written only when asked (``save_traces``): one line per run item, ``{"system", "item", "trace"}``.
TRACES_FILE = "traces.jsonl"
LATENCY_NOTE = (
    "Latency is the wall-clock time of one system.run call (image loading, LLM and tool time), with the "
    "system's models loaded beforehand (their load time is shown apart) and minus any time its LLM calls "
    "waited for a model lock shared with other threads (-j > 1); waits for a shared expert are not "
    "subtracted, so measure latency with -j 1."
)


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
    #: Seconds the LLM calls waited for a shared model's lock (subtracted from ``seconds``).
    wait_seconds: float | None = None
    #: What produced this line (see :mod:`mmreact.eval.fingerprint`); ``None`` on old lines.
    fingerprint: dict[str, Any] | None = None
    #: Whether every fact of the answer is supported by the run's observations (see
    #: :mod:`mmreact.grounding`); ``None`` when the system checks none (end-to-end models,
    #: grounding off) or gave no answer.
    grounded: bool | None = None
    #: The answer's unsupported facts, as written.
    unsupported: tuple[str, ...] = field(default=())

    def to_json(self) -> str:
        data = asdict(self)
        data["capabilities"] = list(self.capabilities)
        data["unsupported"] = list(self.unsupported)
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ItemResult:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["capabilities"] = tuple(known.get("capabilities") or ())
        known["unsupported"] = tuple(known.get("unsupported") or ())
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


class _TraceWriter:
    """Appends ``{"system", "item", "trace"}`` lines (traces that cannot be dumped as JSON are skipped)."""

    def __init__(self, path: Path) -> None:
        self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._lock = threading.Lock()

    def write(self, system: str, item: str, trace: Any) -> None:
        dump = getattr(trace, "model_dump", None)
        if not callable(dump):
            return
        line = json.dumps({"system": system, "item": item, "trace": dump(mode="json")}, ensure_ascii=False) + "\n"
        with self._lock:
            self._f.write(line)
            self._f.flush()

    def close(self) -> None:
        self._f.close()


# -- systems -----------------------------------------------------------------------------------
def is_agent_spec(spec: str) -> bool:
    return spec.strip() == "agent" or spec.strip().startswith("agent:")


def load_system(spec: str, **options: Any) -> System:
    """A system from a spec: :func:`mmreact.mllm.load_system` when that exists, else
    ``agent`` / ``agent:LLMSPEC`` -> :class:`mmreact.Agent` with every tool ready here. ``options``
    go to the system's constructor (e.g. ``examples``, see :mod:`mmreact.fewshot`)."""
    try:
        mllm = importlib.import_module("mmreact.mllm")
    except ModuleNotFoundError as exc:
        if exc.name != "mmreact.mllm":
            raise
        mllm = None
    loader = getattr(mllm, "load_system", None)
    if loader is not None:
        try:
            return loader(spec, **options)
        except ConfigError:
            if not is_agent_spec(spec):
                raise
    if not is_agent_spec(spec):
        raise ConfigError(f"Unknown system spec '{spec}'; use agent or agent:LLMSPEC.")
    from ..agent import Agent

    _, _, llm = spec.strip().partition(":")
    return Agent(llm=llm or None, **options)


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
def _wait(trace: Any) -> float:
    if trace is None:
        return 0.0
    wait = getattr(trace, "llm_wait_seconds", None)
    if wait is None:
        wait = sum(getattr(s, "llm_wait_seconds", 0.0) or 0.0 for s in getattr(trace, "steps", None) or ())
    return float(wait or 0.0)


def _trace_stats(trace: Any) -> dict[str, Any]:
    if trace is None:
        return {}
    steps = getattr(trace, "steps", None)
    llm = getattr(trace, "llm_seconds", None)
    wait = _wait(trace)
    check = getattr(trace, "grounding", None)
    grounded = {} if check is None else {"grounded": check.supported,
                                         "unsupported": tuple(f.text for f in check.unsupported)}
    return {"llm_seconds": None if llm is None else max(0.0, llm - wait),
            "llm_calls": None if steps is None else sum(getattr(s, "decided", None) != "forced" for s in steps),
            "tokens": getattr(trace, "tokens", None), "wait_seconds": wait, **grounded}


def run_item(name: str, system: System, item: EvalItem, scorer: Scorer,
             fingerprint: dict[str, Any] | None = None, on_trace: Any = None) -> ItemResult:
    """Run one system on one item and score it; failures become an ``error`` record.
    ``on_trace(trace)`` receives the run's trace when there is one."""

    def record(**fields: Any) -> ItemResult:
        return ItemResult(system=name, item=item.id, capabilities=item.capabilities, fingerprint=fingerprint,
                          **fields)

    t0 = time.perf_counter()
    try:
        out = system.run(item.question, list(item.images))
    except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
        wall = time.perf_counter() - t0
        trace = getattr(exc, "trace", None)
        if on_trace is not None and trace is not None:
            on_trace(trace)
        return record(prediction=None, score=0.0, status="error", seconds=max(0.0, wall - _wait(trace)),
                      error=one_line(exc), **_trace_stats(trace))
    wall = time.perf_counter() - t0
    prediction: str | None
    if isinstance(out, str):
        prediction, trace = out, None
    elif hasattr(out, "answer"):
        prediction = None if out.answer is None else str(out.answer)
        trace = getattr(out, "trace", None)
    else:
        return record(prediction=None, score=0.0, status="error", seconds=wall,
                      error=f"the system returned a {type(out).__name__}, not a string or a result with .answer")
    seconds = max(0.0, wall - _wait(trace))
    stats = _trace_stats(trace)
    if on_trace is not None and trace is not None:
        on_trace(trace)
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


def rescored(record: ItemResult, item: EvalItem, scorer: Scorer, fingerprint: dict[str, Any]) -> ItemResult:
    """``record`` scored again by ``scorer`` from its saved prediction (no system runs)."""
    if record.prediction is None:
        return replace(record, score=0.0, capabilities=item.capabilities, fingerprint=fingerprint)
    try:
        value = score_item(scorer, record.prediction, item)
    except Exception as exc:  # noqa: BLE001 - as in run_item
        return replace(record, score=0.0, status="score_error", error=one_line(exc), capabilities=item.capabilities,
                       fingerprint=fingerprint)
    return replace(record, score=value, status="answered", error=None, capabilities=item.capabilities,
                   fingerprint=fingerprint)


# -- loads -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LoadRecord:
    """One ``load()`` of a system before its items ran: total seconds, and per part when it says."""

    system: str
    seconds: float
    parts: dict[str, float] | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


def read_loads(out_dir: str | Path) -> dict[str, LoadRecord]:
    """The newest load record of each system in ``out_dir/loads.jsonl`` (unreadable lines are skipped)."""
    p = Path(out_dir) / LOADS_FILE
    out: dict[str, LoadRecord] = {}
    if not p.exists():
        return out
    for raw in p.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            data = json.loads(raw)
            record = LoadRecord(system=str(data["system"]), seconds=float(data["seconds"]),
                                parts={str(k): float(v) for k, v in (data.get("parts") or {}).items()} or None)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            continue
        out[record.system] = record
    return out


def load_models(name: str, system: Any) -> LoadRecord | None:
    """Call ``system.load()`` (when it has one) and time it."""
    load = getattr(system, "load", None)
    if not callable(load):
        return None
    t0 = time.perf_counter()
    parts = load()
    seconds = time.perf_counter() - t0
    clean = None
    if isinstance(parts, Mapping):
        clean = {str(k): float(v) for k, v in parts.items() if isinstance(v, (int, float))} or None
    return LoadRecord(system=name, seconds=seconds, parts=clean)


# -- what to do with each pair -----------------------------------------------------------------
@dataclass
class _Plan:
    run: dict[str, list[EvalItem]]
    rescore: list[tuple[ItemResult, EvalItem]]
    blocked: list[tuple[str, str, fpr.Change]]  # (system, item id, change)


def _plan(items: Sequence[EvalItem], systems: Mapping[str, System], latest: Mapping[tuple[str, str], ItemResult],
          fingerprints: Mapping[tuple[str, str], fpr.Fingerprint], *, retry_errors: bool, rescore: bool,
          rerun: bool) -> _Plan:
    plan = _Plan(run={name: [] for name in systems}, rescore=[], blocked=[])
    for name in systems:
        for it in items:
            record = latest.get((name, it.id))
            if record is None:
                plan.run[name].append(it)
                continue
            change = fpr.compare(fpr.Fingerprint.from_dict(record.fingerprint), fingerprints[(name, it.id)])
            if not change.any:
                if retry_errors and record.status == "error":
                    plan.run[name].append(it)
            elif change.rescorable and rescore:
                plan.rescore.append((record, it))
            elif rerun:
                plan.run[name].append(it)
            else:
                plan.blocked.append((name, it.id, change))
    return plan


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _refusal(path: Path, blocked: Sequence[tuple[str, str, fpr.Change]], rescore: bool) -> str:
    """One sentence: what changed since the saved results, and the ways to go on."""
    parts: list[str] = []
    by_system: dict[str, list[str]] = {}
    for name, _, change in blocked:
        for what in change.system:
            if what not in by_system.setdefault(name, []):
                by_system[name].append(what)
    for name, changes in by_system.items():
        shown = ", ".join(changes[:3]) + (f" and {len(changes) - 3} more" if len(changes) > 3 else "")
        parts.append(f"system '{name}' changed ({shown})")
    legacy = [c for c in blocked if c[2].system and c[2].system[0].startswith("no fingerprint")]
    real = [c for c in blocked if c not in legacy]
    inputs = [i for _, i, c in real if c.input]
    if inputs:
        parts.append(f"the question or images of {_count(len(set(inputs)), 'item')} changed (e.g. '{inputs[0]}')")
    scorers = sorted({c.scorer for _, _, c in real if c.scorer})
    for old, new in scorers[:2]:
        n = len({i for _, i, c in real if c.scorer == (old, new)})
        parts.append(f"the scorer of {_count(n, 'item')} changed ({old} -> {new})")
    keys = [i for _, i, c in real if c.key and not c.input]
    if keys:
        parts.append(f"the answers or choices of {_count(len(set(keys)), 'item')} changed (e.g. '{keys[0]}')")
    if all(c.rescorable for _, _, c in blocked):
        advice = ("run again with --rescore to score the saved predictions anew (no system runs), --rerun to run "
                  "them again, or --fresh to start over")
    else:
        some = any(c.rescorable for _, _, c in blocked)
        advice = ("run again with --rerun to run the changed items again" + (
            " (with --rescore, only those whose system or input changed run)" if some and not rescore else "")
            + ", or --fresh to start over")
    return (f"{path} holds {_count(len(blocked), 'result')} made differently from this run: "
            f"{'; '.join(parts)}; {advice}.")


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
    rescore: bool = False,
    rerun: bool = False,
    progress: bool = True,
    save_traces: bool = False,
) -> list[ItemResult]:
    """Evaluate every system on every item; return one result per (system, item), in order.

    Args:
        scorer: overrides every item's own scorer (a name such as ``"judge:openai:gpt-4o"``).
        retry_errors: on resume, run again the pairs whose last record is an ``error``.
        rescore: on resume, score saved predictions again where only the scorer or the
            answers/choices changed (no system runs).
        rerun: on resume, run again the pairs whose fingerprint changed (with ``rescore``, only
            those that cannot be rescored).
        save_traces: also append each run item's trace to ``traces.jsonl`` (for tool-choice counts).

    Raises:
        ConfigError: saved results were made differently and neither ``rescore`` nor ``rerun``
            says what to do with them (nothing is run or written then).
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
    item_fps = {it.id: fpr.item_fingerprint(it) for it in items}
    system_fps = {name: fpr.system_settings(system) for name, system in systems.items()}
    fingerprints = {(name, it.id): fpr.make(system_fps[name], scorers[it.id].fingerprint, item_fps[it.id])
                    for name in systems for it in items}

    out = Path(out_dir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"Cannot create the output folder {out}: {exc.strerror or exc}.") from None
    path = out / RESULTS_FILE
    if not resume:
        for stale in (path, out / LOADS_FILE, out / TRACES_FILE):
            if stale.exists():
                stale.unlink()
    latest: dict[tuple[str, str], ItemResult] = {}
    for r in read_results(path):
        latest[(r.system, r.item)] = r
    plan = _plan(items, systems, latest, fingerprints, retry_errors=retry_errors, rescore=rescore, rerun=rerun)
    if plan.blocked:
        raise ConfigError(_refusal(path, plan.blocked, rescore))

    from tqdm.auto import tqdm

    writer = _Writer(path)
    lock = threading.Lock()
    traces = _TraceWriter(out / TRACES_FILE) if save_traces else None

    def task(name: str, system: System, item: EvalItem, bar: Any) -> None:
        on_trace = None if traces is None else (lambda trace: traces.write(name, item.id, trace))
        record = run_item(name, system, item, scorers[item.id], fingerprints[(name, item.id)].to_dict(), on_trace)
        writer.write(record)
        with lock:
            latest[(name, item.id)] = record
        bar.update(1)

    try:
        for record, it in plan.rescore:
            new = rescored(record, it, scorers[it.id], fingerprints[(record.system, it.id)].to_dict())
            writer.write(new)
            latest[(record.system, it.id)] = new
        for name, system in systems.items():
            todo = plan.run[name]
            if not todo:
                continue
            loaded = load_models(name, system)
            if loaded is not None:
                with open(out / LOADS_FILE, "a", encoding="utf-8") as f:
                    f.write(loaded.to_json() + "\n")
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
        if traces is not None:
            traces.close()
    return [latest[(name, it.id)] for name in systems for it in items if (name, it.id) in latest]
