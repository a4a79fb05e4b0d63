"""Benchmark mmreact's two local LLM backends on the same weights: llama.cpp (``gguf:``) against
transformers (``hf:``, which reads the same GGUF file with ``from_pretrained(dir, gguf_file=...)``,
dequantised to fp32 on a CPU), both with the same step language (``FULL``: a thought, then up to
four calls or an answer) and greedy decoding.

Each backend runs in a long-lived process of its own (torch's and llama.cpp's thread pools in one
process would slow each other), loaded once; the parent drives them IN ALTERNATION, round by round
(which backend goes first alternates too), so a noisy machine slows both alike, and prints the
MEDIAN of each measurement side by side with the ratio hf/gguf. Per round and backend:

  first step     an agent's first ReAct step (system prompt with every built-in tool, a new
                 question) with the prompt cache cleared: the whole ~750-token prompt is read
  later step     the same chat one and two observations later (a canned ``Action: ocr(image_1)`` /
                 ``caption`` reply and its observation appended, as the agent does): only the new
                 turn is read, the rest comes from the backend's prompt cache
  prompt tok/s   a text reply of one token after the first step's prompt, cache cleared
  decode tok/s   a text reply held to exactly 200 characters (a ``TextFormat``) after the same
                 prompt (cached): generated tokens / seconds, constraint included
  step tok/s     the later steps' generated tokens / their seconds

``cold load`` (library import + model load, in the fresh process) and the first call in that
process (one-time set-up: llama.cpp's pre-decode check, torch's first kernels) are measured once.
The target is a later ``hf:`` step within 3x of llama.cpp's on the same CPU. With ``--e2e`` it also times the
README's receipt question end to end with the embedded default (llama.cpp), every import and model
load included, in a fresh process (target < 10 s on 2 cores).

Both libraries parallelise with OpenMP (libgomp), whose threads spin while they wait for each
other: on a machine shared with other work (more runnable threads than cores) that made both
backends several times slower here, transformers far more than llama.cpp (it runs many more small
parallel regions per token). ``OMP_WAIT_POLICY=PASSIVE`` removes the effect for both; the script
prints the setting it ran under. On a quiet machine leave it unset (what users get).

    python tools/bench_llm.py                  # both backends, 5 rounds
    python tools/bench_llm.py --rounds 9       # more rounds (steadier medians)
    python tools/bench_llm.py --e2e            # and the end-to-end receipt question
    OMP_WAIT_POLICY=PASSIVE python tools/bench_llm.py   # on a shared, noisy machine
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

START = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

BACKENDS = ("gguf", "hf")
QUESTIONS = ["What is the total on this receipt?", "What animal is this?", "How many people are in the photo?",
             "What colour is the car?", "What does the sign say?", "Is there a dog?", "Describe the image.",
             "What time does the clock show?", "Which fruit is on the plate?"]
TURNS = [("Thought: I need to read the text in the image.\nAction: ocr(image_1)",
          "<observation>CORNER CAFE\nLatte 4.50\nCroissant 3.25\nTOTAL 7.75\nThank you!</observation>"),
         ("Thought: I should also see what the image shows.\nAction: caption(image_1)",
          "<observation>a paper receipt on a wooden table</observation>")]


# -- the worker: one backend, loaded once, answering commands on stdin -----------------------
class Worker:
    def __init__(self, backend: str) -> None:
        from mmreact.llms import load_llm
        from mmreact.llms.gguf import default_model_path
        from mmreact.prompts import system_prompt
        from mmreact.tools.registry import resolve_tools

        self.backend = backend
        t0 = time.perf_counter()
        if backend == "gguf":
            import llama_cpp  # noqa: F401
        else:
            import torch  # noqa: F401
            import transformers  # noqa: F401
        t1 = time.perf_counter()
        self.llm: Any = load_llm(f"{backend}:{default_model_path()}")
        self.llm.load()
        t2 = time.perf_counter()
        self.tools = resolve_tools(None)  # every built-in, for the listing only: nothing runs
        self.system = system_prompt(self.tools)
        warm = self.round("Warm up: what is this?", full=False)["first"]["seconds"]
        self.load = {"import": t1 - t0, "load": t2 - t1, "warmup": warm}

    def clear(self) -> None:
        if self.backend == "gguf":
            self.llm.llama.reset()  # llama-cpp-python then reads the whole prompt again
        else:
            self.llm.clear_cache()

    def messages(self, question: str, turns: int) -> tuple:
        from mmreact.llms.base import Message

        out = [Message("system", self.system), Message("user", f"Images: image_1 (640x480)\nQuestion: {question}")]
        for reply, observation in TURNS[:turns]:
            out += [Message("assistant", reply), Message("observation", observation)]
        return tuple(out)

    def timed(self, request: Any) -> dict[str, Any]:
        t0 = time.perf_counter()
        out = self.llm.complete(request)
        seconds = time.perf_counter() - t0
        return {"seconds": seconds, "tokens": out.completion_tokens or 0, "prompt_tokens": out.prompt_tokens or 0,
                "text": out.text, "meta": {k: v for k, v in out.meta.items() if isinstance(v, (int, str))}}

    def round(self, question: str, full: bool = True) -> dict[str, Any]:
        from mmreact.llms.base import LLMRequest
        from mmreact.llms.formats import Chars, Rep, TextFormat

        def step(turns: int) -> LLMRequest:
            done = frozenset(("ocr(image_1)", "caption(image_1)")[:turns])
            return LLMRequest(messages=self.messages(question, turns), tools=tuple(self.tools), handles=("image_1",),
                              done_calls=done, kind="react")

        out: dict[str, Any] = {}
        self.clear()
        out["first"] = self.timed(step(0))
        if not full:
            return out
        out["later"] = [self.timed(step(1)), self.timed(step(2))]
        self.clear()
        out["prompt"] = self.timed(LLMRequest(messages=self.messages(question, 0), max_tokens=1))
        exact = TextFormat(Rep(Chars("\x00", negate=True), 200, 200), name="200 characters")
        out["decode"] = self.timed(LLMRequest(messages=self.messages(question, 0), kind="text", text_format=exact,
                                              max_tokens=400))
        return out


def serve(backend: str) -> None:
    worker = Worker(backend)
    print(json.dumps(worker.load), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        print(json.dumps(worker.round(command["question"])), flush=True)


class Child:
    """A worker process, talked to in JSON lines."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", backend], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                return json.loads(line)
        self.log.seek(0)
        raise SystemExit(f"the {self.backend} worker failed:\n{self.log.read()[-3000:]}")

    def ask(self, question: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"question": question}) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.log.close()


def child_e2e() -> dict[str, Any]:
    from fixtures import render_receipt

    from mmreact import Agent
    from mmreact.llms import load_llm

    agent = Agent(load_llm("default"), tools=["ocr"])
    result = agent.run("What is the total on this receipt?", render_receipt().image)
    steps = result.trace.steps
    return {"seconds": time.perf_counter() - START, "answer": result.answer, "status": result.status,
            "llm": sum(s.llm_seconds for s in steps), "tools": sum(s.tool_seconds or 0 for s in steps)}


# -- the parent: alternation, medians, ratios --------------------------------------------------
def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="rounds per backend, in alternation")
    parser.add_argument("--e2e", action="store_true", help="also time the receipt question end to end (default LLM)")
    parser.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--child-e2e", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        serve(args.worker)
        return
    if args.child_e2e:
        print(json.dumps(child_e2e()))
        return

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"CPU cores available: {cores}; load average at start: {os.getloadavg()[0]:.2f}; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}", flush=True)
    children: dict[str, Child] = {}
    loads: dict[str, dict[str, float]] = {}
    for b in BACKENDS:  # one after the other, so that each load is timed alone
        children[b] = Child(b)
        loads[b] = children[b].read()
        print(f"[{b}] cold load: import {loads[b]['import']:.2f} s + load {loads[b]['load']:.2f} s; first call in "
              f"the process (one-time set-up included) {loads[b]['warmup']:.2f} s", flush=True)
    rounds: dict[str, list[dict[str, Any]]] = {b: [] for b in BACKENDS}
    try:
        for r in range(args.rounds):
            question = QUESTIONS[r % len(QUESTIONS)]
            order = BACKENDS if r % 2 == 0 else BACKENDS[::-1]
            for b in order:
                out = children[b].ask(question)
                rounds[b].append(out)
                later = "  ".join(f"{s['seconds']:.2f} s/{s['tokens']} tok" for s in out["later"])
                print(f"round {r + 1} [{b:4}] first {out['first']['seconds']:.2f} s/{out['first']['tokens']} tok, "
                      f"later {later}, prompt {out['prompt']['prompt_tokens']} tok in "
                      f"{out['prompt']['seconds']:.2f} s, decode {out['decode']['tokens']} tok in "
                      f"{out['decode']['seconds']:.2f} s   (load {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        for c in children.values():
            c.close()

    def later(b: str) -> list[dict[str, Any]]:
        return [s for out in rounds[b] for s in out["later"]]

    rows: list[tuple[str, Any]] = [
        ("cold load: import + load (s)", lambda b: loads[b]["import"] + loads[b]["load"]),
        ("first call in a fresh process (s)", lambda b: loads[b]["warmup"]),
        ("first ReAct step, prompt read (s)", lambda b: _median([o["first"]["seconds"] for o in rounds[b]])),
        ("later ReAct step (s)", lambda b: _median([s["seconds"] for s in later(b)])),
        ("  tokens per later step", lambda b: _median([s["tokens"] for s in later(b)])),
        ("later steps: tokens/s", lambda b: _median([s["tokens"] / s["seconds"] for s in later(b)])),
        ("prompt tokens/s", lambda b: _median([o["prompt"]["prompt_tokens"] / o["prompt"]["seconds"]
                                               for o in rounds[b]])),
        ("decode tokens/s (200 chars, held)", lambda b: _median([o["decode"]["tokens"] / o["decode"]["seconds"]
                                                                 for o in rounds[b]])),
    ]
    print(f"\nmedians over {args.rounds} rounds in alternation (later steps: {2 * args.rounds} per backend); "
          f"load average now {os.getloadavg()[0]:.2f}")
    print(f"{'metric':36} {'gguf: (llama.cpp)':>18} {'hf: (transformers)':>19} {'hf/gguf':>9}")
    values: dict[str, tuple[float, float]] = {}
    for label, get in rows:
        g, h = get("gguf"), get("hf")
        values[label] = (g, h)
        print(f"{label:36} {g:18.3f} {h:19.3f} {h / g:8.2f}x")
    same = sum(a["text"] == b["text"] for x, y in zip(rounds["gguf"], rounds["hf"], strict=True)
               for a, b in zip([x["first"], *x["later"]], [y["first"], *y["later"]], strict=True))
    total = 3 * args.rounds
    print(f"identical replies (greedy, same grammar): {same} of {total} steps")
    engines = {s["meta"].get("constraint") for o in rounds["hf"] for s in [o["first"], *o["later"]]}
    cached = [s["meta"].get("cached_tokens", 0) / max(1, s["prompt_tokens"]) for s in later("hf")]
    print(f"hf: constraint engine {', '.join(sorted(str(e) for e in engines))}; later steps read "
          f"{100 * (1 - _median(cached)):.0f}% of their prompt (the rest from the key/value cache)")
    g, h = values["later ReAct step (s)"]
    print(f"target (a later hf: step within 3x of llama.cpp's): {h / g:.2f}x -> {'met' if h / g <= 3 else 'NOT met'}")
    for x, y in zip(rounds["gguf"][:2], rounds["hf"][:2], strict=False):
        for a, b in zip([x["first"], *x["later"]], [y["first"], *y["later"]], strict=True):
            print(f"    gguf: {a['text'][:100]!r}\n    hf:   {b['text'][:100]!r}")

    if args.e2e:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--child-e2e"], capture_output=True, text=True, check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode or not lines:
            raise SystemExit(f"end-to-end run failed:\n{proc.stderr[-3000:]}")
        e2e = json.loads(lines[-1])
        print(f"\nend-to-end receipt question, embedded default (llama.cpp), fresh process: {e2e['seconds']:.2f} s "
              f"in-process ({time.perf_counter() - t0:.2f} s with interpreter start; LLM {e2e['llm']:.2f} s, "
              f"OCR {e2e['tools']:.2f} s): {e2e['answer']!r} -> target < 10 s "
              f"{'met' if e2e['seconds'] < 10 else 'NOT met'}")


if __name__ == "__main__":
    main()
