"""Prefetch: does starting the experts while the LLM thinks save time, and does it ever cost any?

Policies compared in the same rounds, in an order that rotates every round (so no policy always
runs first or after another): ``none``; ``auto`` (the default); ``oracle`` (prefetch exactly the
tools the model will call, what a perfect guess would start). The ``ideal`` is computed from the
same round's ``none`` run: the tools of the first step hidden entirely behind the model's first
step, ``max(step 1, tools) + later steps``; the best any prefetch can do.

Scenarios (the built-in expert set: the real OCR expert, tiny random caption / tags /
dense-caption models and YOLO11n from its config, what runs offline here; a receipt rendered
anew for each run, so no run answers another's calls from the cache):

* ``remote-one`` / ``remote-none`` / ``remote-all``: a model elsewhere (a scripted LLM that takes
  ``--steps`` seconds per step and no CPU here) that calls OCR, answers without a tool, or calls
  all five experts; ``auto`` then starts all five;
* ``local``: the embedded default (SmolLM2-135M by llama.cpp on this CPU) asked for the total;
  ``auto`` starts nothing (a local model with several tools; the ``all`` row shows why);
* ``exit``: ``mmreact ask receipt.png "Say hi" --llm scripted:F`` (answers at once) in a fresh
  process with ``--prefetch auto`` vs ``none``: the whole process's wall time.

A run's time is the agent's (question to answer); jobs a run abandoned are waited for before the
next run starts (not counted), so they do not slow it. Medians over ``--repeats`` rounds.

    python tools/bench_latency.py                       # every scenario, step times 0.5, 1.5, 3 s
    python tools/bench_latency.py --only remote --steps 1.5 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import wait
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

EXPERTS = ("ocr", "caption", "tags", "detect", "dense_caption")
REMOTE = {
    "remote-one": ["Action: ocr(image_1)", "Final Answer: done"],
    "remote-none": ["Final Answer: hi"],
    "remote-all": ["Action: " + "\nAction: ".join(f"{t}(image_1)" for t in EXPERTS), "Final Answer: done"],
}


def slow_llm(replies: list[str], seconds: float):  # noqa: ANN201
    """A scripted LLM that 'thinks' ``seconds`` per step without using the CPU."""
    from mmreact import ScriptedLLM

    def later(text: str):  # noqa: ANN202
        def reply(request):  # noqa: ANN001, ANN202
            time.sleep(seconds)
            return text
        return reply

    return ScriptedLLM([later(r) for r in replies], name=f"scripted ({seconds:g} s per step)")


def ideal(trace) -> float:  # noqa: ANN001
    """max(step 1, its tools) + later steps, from a run without prefetch."""
    first, *rest = trace.steps
    return max(first.llm_seconds, first.tool_seconds) + sum(s.llm_seconds + s.tool_seconds for s in rest)


def run_once(agent, image, question: str) -> tuple[float, Any]:  # noqa: ANN001
    """One question in a chat; waits for the jobs it abandoned (not counted) before returning."""
    from mmreact.cache import configure

    configure()  # a fresh result cache
    chat = agent.chat()
    t0 = time.perf_counter()
    result = chat.ask(question, [image])
    seconds = time.perf_counter() - t0
    wait([j.future for j in chat.prefetch.jobs.values()])
    assert result.ok, result.message
    return seconds, result.trace


def receipt(i: int):  # noqa: ANN201 - a receipt not seen before
    from fixtures import render_receipt

    return render_receipt(items=((f"Item {i}", f"{i % 50 + 1}.25"), ("Tea", "2.10"))).image


def rounds(policies: list[str], repeats: int, one) -> dict[str, list[Any]]:  # noqa: ANN001
    """``one(policy, index)`` for each policy, ``repeats`` rounds, the order rotated every round."""
    out: dict[str, list[Any]] = {p: [] for p in policies}
    n = 0
    for r in range(repeats):
        order = policies[r % len(policies):] + policies[:r % len(policies)]
        for policy in order:
            n += 1
            out[policy].append(one(policy, n))
    return out


def report(name: str, walls: dict[str, list[float]], ideals: list[float], note: str = "") -> None:
    med = {p: statistics.median(v) for p, v in walls.items()}
    best = statistics.median(ideals) if ideals else None
    cells = "  ".join(f"{p} {s:.2f}" for p, s in med.items())
    extra = f"  ideal {best:.2f}" if best is not None else ""
    vs = f"  auto vs none {med['none'] / med['auto']:.2f}x" if "auto" in med else ""
    if best is not None and "auto" in med:
        vs += f", auto reaches {best / med['auto']:.0%} of the ideal"
    print(f"{name:<24} {cells}{extra}{vs}{note}", flush=True)


def remote(tools, steps: list[float], repeats: int) -> None:  # noqa: ANN001
    from mmreact import Agent

    for seconds in steps:
        for name, replies in REMOTE.items():
            called = sorted({line.split("(")[0].split()[-1] for r in replies for line in r.splitlines()
                             if line.startswith("Action:")})
            policies = ["none", "auto"] + (["oracle"] if called and called != sorted(EXPERTS) else [])
            ideals: list[float] = []

            def one(policy: str, i: int) -> float:
                prefetch = called if policy == "oracle" else policy
                wall, trace = run_once(Agent(slow_llm(replies, seconds), tools=tools, prefetch=prefetch),
                                       receipt(i), "What is the total?")
                if policy == "none":
                    ideals.append(ideal(trace))
                return wall

            walls = rounds(policies, repeats, one)
            if called == sorted(EXPERTS):
                walls["oracle"] = walls["auto"]  # all five called: the oracle starts what auto starts
            report(f"{name} {seconds:g} s/step", walls, ideals)


def local(tools, repeats: int) -> None:  # noqa: ANN001
    from mmreact import Agent
    from mmreact.prefetch import choose

    agent = Agent(tools=tools)
    agent.load()
    assert choose("auto", tools, agent.llm) == (), "auto prefetches for this local model: a GPU?"
    called: list[list[str]] = []
    ideals: list[float] = []

    def one(policy: str, i: int) -> float:
        prefetch = "none" if policy == "auto" else (called[-1] if policy == "oracle" and called else policy)
        runner = Agent(agent.llm, tools=tools, prefetch=prefetch)
        wall, trace = run_once(runner, receipt(i), "What is the total on this receipt?")
        if policy == "none":
            ideals.append(ideal(trace))
            called.append(sorted({c.tool for s in trace.steps for c in s.calls}) or ["ocr"])
        return wall

    walls = rounds(["none", "oracle", "all"], repeats, one)
    walls = {"none": walls["none"], "auto": walls["none"], "oracle": walls["oracle"], "all": walls["all"]}
    report("local (embedded default)", walls, ideals, f"  (auto = none; the model called {called[0]})")


def exit_time(repeats: int) -> None:
    image = ROOT / "examples" / "receipt.png"
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "hi.json"
        script.write_text(json.dumps(["Final Answer: hi"]))

        def one(policy: str, _: int) -> float:
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "mmreact", "ask", str(image), "Say hi", "--llm",
                                   f"scripted:{script}", "--prefetch", policy], capture_output=True, text=True,
                                  timeout=600, cwd=ROOT)
            assert done.returncode == 0 and done.stdout == "hi\n", done.stderr[-500:]
            return time.perf_counter() - t0

        walls = rounds(["none", "auto"], repeats, one)
    report("exit (fresh process)", walls, [], "  (whole process, mmreact ask ... --llm scripted:F)")


def expert_tools(root: Path) -> list[Any]:
    from tiny_models import build_blip, build_clip, build_florence2

    from mmreact.experts.caption import CaptionTool
    from mmreact.experts.dense import DenseCaptionTool
    from mmreact.experts.detect import DetectTool
    from mmreact.experts.tags import TagsTool
    from mmreact.tools.registry import resolve_tools

    tools = [*resolve_tools(["ocr"], ready_only=False), CaptionTool(model=str(build_blip(root / "blip"))),
             TagsTool(model=str(build_clip(root / "clip"))), DetectTool(model="yolo11n.yaml"),
             DenseCaptionTool(model=str(build_florence2(root / "fl")))]
    for t in tools:
        t.ensure_ready()
    from mmreact import Agent

    run_once(Agent(slow_llm(REMOTE["remote-all"], 0.0), tools=tools, prefetch="none"), receipt(-1), "warm-up")
    return tools


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", default="0.5,1.5,3", help="seconds per step of the remote model")
    parser.add_argument("--only", choices=["remote", "local", "exit"])
    args = parser.parse_args()
    started = time.perf_counter()
    print("seconds per question, medians; ratios > 1x: faster than without prefetch")
    if args.only in (None, "exit"):
        exit_time(args.repeats)
    if args.only in (None, "remote", "local"):
        with tempfile.TemporaryDirectory() as tmp:
            tools = expert_tools(Path(tmp))
            if args.only in (None, "remote"):
                remote(tools, [float(s) for s in args.steps.split(",")], args.repeats)
            if args.only in (None, "local"):
                local(tools, args.repeats)
    print(f"({time.perf_counter() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
