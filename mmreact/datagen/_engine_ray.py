"""The Ray Data engine: the same stage functions, scaled out over a Ray cluster.

::

    from_items(images) -> map_batches(ExpertStage)   one actor per model set, batches to run_batch
                       -> map_batches(LLMStage)      a second actor pool, one record per (image, kind)
                       -> iter_batches in the driver  each record appended to OUT/records.jsonl

Decisions:

- Records are written as they finish, by the driver, into the same store the local engine
  writes (appended and fsync'd one by one): a run killed part-way keeps every record that
  reached the driver, and a rerun resumes (tested with ``kill -9``). Ray Data's blocks are cut
  to one row (``target_max_block_size``), so a record does not wait for the rest of its batch;
  records are small, so the driver is no bottleneck. (Older runs wrote ``OUT/shards/*.jsonl``
  at the end of the run; the store still reads them.)
- Exactly once through fixed ids: the driver skips images whose records are all in the store;
  the expert actors skip ids already done; a record that a retried Ray task sent twice is read
  once (the store keeps the first of each id and image; a later error never replaces it).
- Expert actors take ``num_gpus`` each (``0``: CPU); ``cpus_per_worker`` defaults to a share
  of the cluster's CPUs that lets every actor and the read/write tasks start at once (Ray Data
  otherwise waits for CPUs that never free up on a small machine).
- Rows between the stages carry JSON text (a job or a finished record), so Arrow never has to
  unify the schemas of nested, ragged contexts.
- ``max_cost`` is kept by a small Ray actor that the LLM actors ask before each call and tell
  after it; past the budget the remaining jobs are left undone (a rerun does them).
- The LLM reaches the actors as its spec string, a picklable LLM object, or a function that
  makes one in each actor (for objects that hold locks or open files). A llama.cpp model made
  from a spec runs with as many threads as CPUs Ray gave its actor.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError
from ._stages import ImageTask, Job, expert_stage, llm_stage
from .config import DatagenConfig, Price
from .context import Context
from .records import Record

__all__ = ["run_ray", "ExpertStage", "LLMStage"]

_COLUMNS = ("id", "job", "record")


def _rows(rows: list[dict[str, str]]) -> dict[str, np.ndarray]:
    return {c: np.array([r[c] for r in rows], dtype=object) for c in _COLUMNS}


def job_to_json(job: Job) -> str:
    return json.dumps({"id": job.id, "image": job.image, "kind": job.kind, "sha256": job.sha256,
                       "width": job.width, "height": job.height, "context": job.context.to_dict(),
                       "stat": job.stat})


def job_from_json(text: str) -> Job:
    d = json.loads(text)
    stat = d.get("stat")
    return Job(d["id"], d["image"], d["kind"], d["sha256"], int(d["width"]), int(d["height"]),
               Context.from_dict(d["context"]), None if not stat else (int(stat[0]), int(stat[1])))


class ExpertStage:
    """Ray Data callable class: one set of experts per actor; a batch of images in, jobs out."""

    def __init__(self, tools: Sequence[str], config: DatagenConfig, fingerprint: str,
                 done: Sequence[Sequence[str]], annotations: dict[str, Any] | None, seen: dict[str, str]) -> None:
        from ..tools.registry import resolve_tools

        self.tools = resolve_tools(list(tools))
        self.config = config
        self.fingerprint = fingerprint
        self.done = frozenset((str(i), str(image)) for i, image in done)
        self.annotations = annotations
        self.seen = seen

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tasks = [ImageTask(str(p), str(i)) for p, i in zip(batch["path"], batch["image"])]
        # ``seen`` holds the store's images only (claim=False): actors see their batches in no set
        # order, so an image is not claimed here; copies within one run are rejected on reading.
        jobs, records = expert_stage(tasks, self.tools, self.config, self.fingerprint, done=self.done,
                                     annotations=self.annotations, seen=self.seen, claim=False)
        rows = [{"id": j.id, "job": job_to_json(j), "record": ""} for j in jobs]
        rows += [{"id": r.id, "job": "", "record": r.to_json()} for r in records]
        return _rows(rows)


class LLMStage:
    """Ray Data callable class: one LLM per actor; jobs in, finished records out."""

    def __init__(self, llm: Any, prompts: dict[str, Any], cleanup: Any, config: DatagenConfig, fingerprint: str,
                 budget: Any = None) -> None:
        from ..grounding.vocab import default_vocabulary
        from ..llms import LLM, load_llm

        self.llm = llm() if callable(llm) and not isinstance(llm, (str, LLM)) else load_llm(llm)
        if llm is None or isinstance(llm, str):  # made from a spec here: fit it to this actor's CPUs
            _fit_threads(self.llm)
        self.prompts = prompts
        self.cleanup = cleanup
        self.config = config
        self.fingerprint = fingerprint
        self.budget = budget
        self.vocab = default_vocabulary()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import ray

        rows = []
        for rid, job_text, record_text in zip(batch["id"], batch["job"], batch["record"]):
            if record_text:
                rows.append({"id": str(rid), "job": "", "record": str(record_text)})
                continue
            if self.budget is not None and ray.get(self.budget.over.remote()):
                ray.get(self.budget.skip.remote())
                continue
            record = llm_stage(job_from_json(str(job_text)), self.llm, self.prompts, self.config, self.fingerprint,
                               cleanup=self.cleanup, vocab=self.vocab)
            if self.budget is not None:
                ray.get(self.budget.add.remote(*record.tokens))
            rows.append({"id": record.id, "job": "", "record": record.to_json()})
        return _rows(rows)


def _fit_threads(llm: Any) -> None:
    """A llama.cpp model in an actor uses the CPUs Ray gave the actor (Ray sets OMP_NUM_THREADS to
    them), not every core of the node: actors sharing cores with spin-waiting threads slow down
    many times over."""
    import os

    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and hasattr(llm, "n_threads") and hasattr(llm, "path"):
        llm.n_threads = max(1, int(threads))


class _Budget:
    """Spending so far, shared by the LLM actors (a Ray actor)."""

    def __init__(self, price: Price, max_cost: float) -> None:
        self.price, self.max_cost = price, max_cost
        self.spent = 0.0
        self.skipped = 0

    def over(self) -> bool:
        return self.spent >= self.max_cost

    def add(self, prompt_tokens: int, completion_tokens: int) -> float:
        self.spent += self.price.cost(prompt_tokens, completion_tokens)
        return self.spent

    def skip(self) -> None:
        self.skipped += 1

    def stats(self) -> tuple[float, int]:
        return self.spent, self.skipped


def _check_tools_by_name(tools: Sequence[Any]) -> None:
    """Actors find experts by name (a loaded model cannot be pickled): each tool must be the one its
    name gives in a fresh process."""
    from ..tools.registry import resolve_tools

    for t in tools:
        try:
            named = resolve_tools([t.name])[0]
        except Exception:  # noqa: BLE001 - not found by name is the same problem
            named = None
        if named is None or getattr(named, "cache_version", None) != getattr(t, "cache_version", None):
            raise ConfigError(f"The Ray engine finds experts by name, and '{t.name}' names another model there; "
                              "pass tool names and choose models with MMREACT_*_MODEL variables.")


def _check_picklable(llm: Any) -> None:
    from ..llms import LLM

    if isinstance(llm, str) or llm is None or (callable(llm) and not isinstance(llm, LLM)):
        return
    import ray.cloudpickle as cloudpickle

    try:
        cloudpickle.dumps(llm)
    except Exception:  # noqa: BLE001 - any pickling failure means the same thing to the user
        raise ConfigError(f"The LLM object {llm!r} cannot be sent to Ray workers; pass a spec string, or a "
                          "function that makes the LLM, instead.") from None


def run_ray(prep: Any, tasks: Sequence[ImageTask], *, batch_size: int = 8, max_cost: float | None = None,
            progress: bool = False, address: str | None = None, expert_workers: int = 1, llm_workers: int = 1,
            num_gpus: float = 0.0, cpus_per_worker: float | None = None) -> tuple[Any, str | None, dict[str, Any]]:
    """Generate records for ``tasks`` on Ray into ``prep.store``."""
    from ._engine_local import Tally

    tally = Tally(price=prep.price)
    if expert_workers < 1 or llm_workers < 1:
        raise ConfigError("The Ray engine needs at least one expert worker and one LLM worker.")
    if num_gpus < 0:
        raise ConfigError(f"num_gpus must be 0 or more, got {num_gpus:g}.")
    if not tasks:
        return tally, None, {}
    try:
        import ray
        from ray.data import DataContext
    except ImportError:
        raise ConfigError("The Ray engine needs Ray Data: pip install 'mmreact[ray]'.") from None
    _check_picklable(prep.llm_source)
    _check_tools_by_name(prep.tools)
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    if cpus_per_worker is None:
        total = float(ray.cluster_resources().get("CPU", 1.0))
        cpus_per_worker = round(min(1.0, total / (expert_workers + llm_workers + 1)), 3)
    ctx = DataContext.get_current()
    saved = (ctx.enable_progress_bars, ctx.print_on_execution_start, ctx.target_max_block_size)
    ctx.enable_progress_bars = progress
    ctx.print_on_execution_start = progress
    # Every record its own block: it reaches the driver (and the store) when it is made, not when
    # the rest of its batch is done.
    ctx.target_max_block_size = 1
    try:
        stopped = _stream(prep, tasks, tally, batch_size=batch_size, max_cost=max_cost, expert_workers=expert_workers,
                          llm_workers=llm_workers, num_gpus=num_gpus, cpus_per_worker=cpus_per_worker)
    finally:
        ctx.enable_progress_bars, ctx.print_on_execution_start, ctx.target_max_block_size = saved
    return tally, stopped, {"expert_workers": expert_workers, "llm_workers": llm_workers,
                            "cpus_per_worker": cpus_per_worker, "num_gpus": num_gpus}


def _stream(prep: Any, tasks: Sequence[ImageTask], tally: Any, *, batch_size: int, max_cost: float | None,
            expert_workers: int, llm_workers: int, num_gpus: float, cpus_per_worker: float) -> str | None:
    """Run the two stages on Ray Data and append each record to the store as it arrives."""
    import ray
    from ray.data import ActorPoolStrategy

    budget = None
    if max_cost is not None and prep.price is not None:
        budget = ray.remote(num_cpus=0)(_Budget).remote(prep.price, max_cost)
    items = [{"path": t.path, "image": t.image} for t in tasks]
    ds = ray.data.from_items(items, override_num_blocks=max(1, math.ceil(len(items) / batch_size)))
    ds = ds.map_batches(
        ExpertStage, batch_size=batch_size, batch_format="numpy", compute=ActorPoolStrategy(size=expert_workers),
        num_cpus=cpus_per_worker, num_gpus=num_gpus or None,
        fn_constructor_kwargs={"tools": [t.name for t in prep.tools], "config": prep.config,
                               "fingerprint": prep.fingerprint_id, "done": sorted(prep.done),
                               "annotations": prep.annotations, "seen": prep.seen})
    ds = ds.map_batches(
        LLMStage, batch_size=1, batch_format="numpy", compute=ActorPoolStrategy(size=llm_workers),
        num_cpus=cpus_per_worker,
        fn_constructor_kwargs={"llm": prep.llm_source, "prompts": prep.prompts, "cleanup": prep.cleanup,
                               "config": prep.config, "fingerprint": prep.fingerprint_id, "budget": budget})
    # Each record is appended to the store (fsync'd) as soon as its block reaches the driver, so a
    # run killed part-way keeps what is done and a rerun resumes, as with the local engine.
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for text in batch["record"]:
            if text:
                record = Record.from_dict(json.loads(str(text)))
                prep.store.append(record)
                tally.add(record)
    if budget is not None:
        _, skipped = ray.get(budget.stats.remote())
        return "budget" if skipped else None
    return None
