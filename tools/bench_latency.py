"""Prefetch: does starting the experts while the LLM thinks hide their time? Ratios and bounds.

Three scenarios, each run with prefetch on and off, alternating, in the same run:

1. ``cold``: the README's receipt question in a fresh process with the embedded defaults
   (``mmreact ask examples/receipt.png "What is the total on this receipt?"``, SmolLM2 + OCR),
   wall time of the whole process, imports and model loads included.
2. ``ocr``: a scripted LLM that takes a fixed 1.5 s per step (a hosted model's latency; it uses no
   CPU) and the real OCR expert (loaded), on receipts it has not seen (no cache hits).
3. ``photo``: the same 1.5 s LLM calling caption and detect on a photo, with tiny random caption /
   dense-caption / tags models and YOLO11n from its config (what runs offline here); prefetch
   ``all`` starts four experts, so one is prefetched for nothing and its cost shows.

For 2 and 3 the best prefetch can do is hide the tools behind the first step: time without
prefetch / time with it can reach at most (step 1 + tools + later steps) / (max(step 1, tools) +
later steps). The bound is computed from the same run's prefetch-off traces and printed next to
the ratio. Medians over ``--repeats``.

    python tools/bench_latency.py                    # all three, 3 repeats each
    python tools/bench_latency.py --only ocr --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

STEP_SECONDS = 1.5


def slow_llm(replies: list[str]):  # noqa: ANN201
    """A scripted LLM that 'thinks' STEP_SECONDS per step without using the CPU."""
    from mmreact import ScriptedLLM

    def later(text: str):  # noqa: ANN202
        def reply(request):  # noqa: ANN001, ANN202
            time.sleep(STEP_SECONDS)
            return text
        return reply

    return ScriptedLLM([later(r) for r in replies], name=f"scripted ({STEP_SECONDS:g} s per step)")


def bound(trace) -> float:  # noqa: ANN001
    """(step 1 + tools + later) / (max(step 1, tools) + later), from a prefetch-off trace."""
    first, *rest = trace.steps
    later = sum(s.llm_seconds + s.tool_seconds for s in rest)
    return (first.llm_seconds + first.tool_seconds + later) / (max(first.llm_seconds, first.tool_seconds) + later)


def cold(repeats: int) -> dict[str, float]:
    receipt = ROOT / "examples" / "receipt.png"
    code = ("import sys, time; t = time.perf_counter(); from mmreact import Agent; "
            "r = Agent(prefetch=sys.argv[1]).run('What is the total on this receipt?', [sys.argv[2]]); "
            "print(r.answer, file=sys.stderr); print(time.perf_counter() - t)")
    times: dict[str, list[float]] = {"auto": [], "none": []}
    answers = set()
    for _ in range(repeats):
        for policy in ("none", "auto"):
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", code, policy, str(receipt)], capture_output=True, text=True,
                                  timeout=600, cwd=ROOT)
            if done.returncode:
                raise RuntimeError(done.stderr[-500:])
            times[policy].append(time.perf_counter() - t0)
            answers.add(done.stderr.strip().splitlines()[-1])
    off, on = statistics.median(times["none"]), statistics.median(times["auto"])
    print(f"cold   receipt, embedded defaults, fresh process: off {off:.2f} s, on (auto: ocr) {on:.2f} s, "
          f"ratio {off / on:.2f}x   (answers: {sorted(answers)})")
    return {"off": off, "on": on}


def scenario(name: str, make_agent, images, replies, repeats: int) -> None:  # noqa: ANN001
    from mmreact.cache import configure

    walls: dict[str, list[float]] = {"none": [], "on": []}
    bounds: list[float] = []
    unused: list[float] = []
    for i in range(repeats):
        for mode in ("none", "on"):
            configure()  # a fresh result cache: no run answers another's calls
            agent = make_agent(slow_llm(replies), "none" if mode == "none" else "all")
            image = images(i, mode)
            t0 = time.perf_counter()
            result = agent.run("What is in this image?", [image])
            walls[mode].append(time.perf_counter() - t0)
            assert result.ok, result.message
            if mode == "none":
                bounds.append(bound(result.trace))
            else:
                unused += [p.seconds or 0.0 for p in result.trace.prefetched if not p.used]
    off, on = statistics.median(walls["none"]), statistics.median(walls["on"])
    best = statistics.median(bounds)
    print(f"{name:6} off {off:.2f} s, on {on:.2f} s, ratio {off / on:.2f}x, bound {best:.2f}x "
          f"({(off / on) / best:.0%} of the bound); prefetched unused: {len(unused)} jobs, "
          f"{sum(unused):.2f} s of expert time")


def ocr_scenario(repeats: int) -> None:
    from fixtures import render_receipt

    from mmreact import Agent
    from mmreact.registry import resolve_tools

    ocr = resolve_tools(["ocr"], ready_only=False)
    ocr[0].ensure_ready()

    def images(i: int, mode: str):  # noqa: ANN202 - a receipt not seen before
        items = ((f"Item {i}{mode}", f"{i + 1}.25"), ("Tea", "2.10"))
        return render_receipt(items=items).image

    scenario("ocr", lambda llm, policy: Agent(llm, tools=ocr, prefetch=policy), images,
             ["Action: ocr(image_1)", "Final Answer: done"], repeats)


def photo_scenario(repeats: int) -> None:
    import numpy as np
    from tiny_models import build_blip, build_clip, build_florence2

    from mmreact import Agent
    from mmreact.experts.caption import CaptionTool
    from mmreact.experts.dense import DenseCaptionTool
    from mmreact.experts.detect import DetectTool
    from mmreact.experts.tags import TagsTool

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tools = [CaptionTool(model=str(build_blip(root / "blip"))), DetectTool(model="yolo11n.yaml"),
                 TagsTool(model=str(build_clip(root / "clip"))), DenseCaptionTool(model=str(build_florence2(root / "fl")))]
        for t in tools:
            t.ensure_ready()
        base = np.asarray(__import__("PIL.Image", fromlist=["open"]).open(
            __import__("fixtures").skimage_path("astronaut.png")).convert("RGB"))

        def images(i: int, mode: str):  # noqa: ANN202 - the photo, a pixel changed: not in the cache
            img = base.copy()
            img[0, i % 512, 0] = (i * 7 + (mode == "on")) % 256
            return img

        scenario("photo", lambda llm, policy: Agent(llm, tools=tools, prefetch=policy), images,
                 ["Action: caption(image_1)\nAction: detect(image_1)\nAction: dense_caption(image_1)",
                  "Final Answer: done"], repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["cold", "ocr", "photo"])
    args = parser.parse_args()
    started = time.perf_counter()
    if args.only in (None, "cold"):
        cold(args.repeats)
    if args.only in (None, "ocr"):
        ocr_scenario(args.repeats)
    if args.only in (None, "photo"):
        photo_scenario(args.repeats)
    print(f"({time.perf_counter() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
