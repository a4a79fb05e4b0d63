"""The local engine: the stages in this process, images in batches, LLM calls on a thread pool.

Decisions:

- Images go through the experts ``batch_size`` at a time (one ``run_batch`` per expert per
  batch); the batch's LLM jobs then run on ``concurrency`` threads (useful for network LLMs; a
  local model serialises calls on its own lock). Each record is appended to the store as soon as
  it exists.
- ``max_cost`` (with a ``price``) is checked before each LLM call is scheduled: past the budget
  no new call starts, the calls in flight finish, and the run ends with ``stopped="budget"``; a
  rerun with a higher budget goes on where it stopped.
- The progress bar counts images and shows records accepted / rejected / errors, tokens and,
  with a price, the cost so far.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from ._stages import ImageTask, Job, Prepared, expert_stage, llm_stage
from .config import Price
from .records import Record

__all__ = ["run_local", "Tally"]


@dataclass
class Tally:
    """Running totals of a run (thread-safe through ``add``)."""

    price: Price | None = None
    accepted: int = 0
    rejected: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    llm_calls: int = 0
    keys: list[tuple[str, str]] = field(default_factory=list)  # (id, image) of every record written
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, record: Record) -> None:
        with self._lock:
            self.keys.append((record.id, record.image))
            if record.status == "accepted":
                self.accepted += 1
            elif record.status == "rejected":
                self.rejected += 1
            else:
                self.errors += 1
            p, c = record.tokens
            self.prompt_tokens += p
            self.completion_tokens += c
            self.llm_calls += int(record.llm.get("calls") or 0)

    def recount(self, records: Sequence[Record]) -> None:
        """Count the records written by this run by their verdict as the store reads them (a copy
        two Ray actors both made, a pair repeated on many images: marked when read)."""
        final = {(r.id, r.image): r.status for r in records}
        statuses = [final.get(k, "error") for k in dict.fromkeys(self.keys)]
        self.accepted = statuses.count("accepted")
        self.rejected = statuses.count("rejected")
        self.errors = len(statuses) - self.accepted - self.rejected

    @property
    def cost(self) -> float | None:
        return None if self.price is None else self.price.cost(self.prompt_tokens, self.completion_tokens)

    def postfix(self) -> dict[str, Any]:
        out: dict[str, Any] = {"accepted": self.accepted, "rejected": self.rejected, "errors": self.errors,
                               "tokens": self.prompt_tokens + self.completion_tokens}
        if self.cost is not None:
            out["cost"] = f"${self.cost:.4f}"
        return out


def run_local(prep: Prepared, tasks: Sequence[ImageTask], *, batch_size: int = 8, concurrency: int = 1,
              max_cost: float | None = None, progress: bool = True,
              on_record: Callable[[Record], None] | None = None) -> tuple[Tally, str | None]:
    """Generate records for ``tasks`` into ``prep.store``; returns the tally and why it stopped
    early (``"budget"``) or ``None``."""
    from tqdm.auto import tqdm

    tally = Tally(price=prep.price)
    seen = dict(prep.seen)
    stopped: str | None = None

    def keep(record: Record) -> None:
        prep.store.append(record)
        tally.add(record)
        if on_record is not None:
            on_record(record)

    def over_budget() -> bool:
        cost = tally.cost
        return max_cost is not None and cost is not None and cost >= max_cost

    def work(job: Job) -> Record:
        return llm_stage(job, prep.llm, prep.prompts, prep.config, prep.fingerprint_id, cleanup=prep.cleanup,
                         vocab=prep.vocab)

    pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="datagen-llm") \
        if concurrency > 1 else None
    bar = tqdm(total=len(tasks), unit="image", desc="datagen", disable=not progress, dynamic_ncols=True)
    try:
        for start in range(0, len(tasks), batch_size):
            if stopped:
                break
            batch = tasks[start:start + batch_size]
            jobs, ready = expert_stage(batch, prep.tools, prep.config, prep.fingerprint_id, done=prep.done,
                                       annotations=prep.annotations, seen=seen)
            if pool is None:
                for job in jobs:
                    if over_budget():
                        stopped = "budget"
                        break
                    keep(work(job))
                    bar.set_postfix(tally.postfix(), refresh=False)
            else:
                stopped = _run_pool(pool, jobs, work, keep, over_budget, concurrency) or stopped
            for record in ready:  # after the LLM's records: an image's pixels belong to the first record
                keep(record)
            bar.update(len(batch))
            bar.set_postfix(tally.postfix())
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return tally, stopped


def _run_pool(pool: ThreadPoolExecutor, jobs: list[Job], work: Callable[[Job], Record],
              keep: Callable[[Record], None], over_budget: Callable[[], bool], width: int) -> str | None:
    pending: set[Future[Record]] = set()
    queue = list(reversed(jobs))
    stopped = None
    while queue or pending:
        while queue and len(pending) < width and stopped is None:
            if over_budget():
                stopped = "budget"
                break
            pending.add(pool.submit(work, queue.pop()))
        if not pending:
            break
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for f in done:
            keep(f.result())
        if stopped:
            queue.clear()
    return stopped

