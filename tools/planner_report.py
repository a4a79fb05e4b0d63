"""How well does the embedded planner choose, when it has a real choice? Three numbers.

The embedded default (SmolLM2-135M under the step grammar) answers labelled questions about
images built here, with two real tools to choose from: ``ocr`` (the real EasyOCR expert, shipped
weights) and ``colors`` (a real pure-Python tool: the image's main colours by pixel counts). Each
question says which tool answers it (text questions: ``ocr``; colour questions: ``colors``) and
what the right answers are. Printed:

1. **parse rate over real choices**: replies that failed to parse, counted only over steps where
   the grammar left the model at least two different steps (``StepRecord.choices >= 2``). Under
   the grammar this is 0 by construction; the same questions run once more with the grammar
   off (``--free``, the same model and prompt) give the model's own rate for comparison.
2. **right tool**: the first call names the tool the question needs (over runs whose first step
   was a real choice).
3. **right answer**: the final answer matches a right answer (``mmreact.eval``'s default scorer).
4. **grounded**: answers whose every fact the run's observations support (``mmreact.grounding``).
   With the grammar the embedded default answers under ``grounding="constrain"`` (its default:
   the answer is a phrase of the observations, ranked by the model and question relevance); the
   runs without the grammar answer freely and are only checked. ``--grounding check`` runs the
   grammar column with free answers too, as before grounded answers existed.

These questions are a *tuning* set: the grounded answer's settings were chosen on them (and on
the built-in eval set). ``tools/make_heldout.py`` makes the set that no choice ever saw.

    python tools/planner_report.py            # every question (about 40), about a minute on 2 cores
    python tools/planner_report.py --free     # also the unconstrained parse rate (12 of the questions)
    python tools/planner_report.py --llm gguf:model.gguf   # another planner, same questions
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from mmreact import Image, tool  # noqa: E402 - light; resolves the colour tool's annotations

PALETTE = {"black": (0, 0, 0), "white": (255, 255, 255), "grey": (128, 128, 128), "red": (200, 30, 30),
           "green": (30, 150, 50), "blue": (30, 60, 200), "yellow": (230, 210, 40), "orange": (240, 140, 30),
           "brown": (120, 80, 40), "pink": (240, 150, 180), "purple": (120, 50, 150)}


@tool
def colors(image: Image) -> str:
    """List the main colours of the image with their share of the pixels. Use it for questions about colour."""
    import numpy as np

    pixels = np.asarray(image.pil.resize((64, 64)), dtype=np.float32).reshape(-1, 1, 3)
    palette = np.array(list(PALETTE.values()), dtype=np.float32).reshape(1, -1, 3)
    nearest = ((pixels - palette) ** 2).sum(axis=2).argmin(axis=1)
    shares = collections.Counter(list(PALETTE)[i] for i in nearest.tolist())
    return "Main colours: " + ", ".join(f"{n} {c * 100 // len(nearest)}%" for n, c in shares.most_common(4))


@dataclass(frozen=True)
class Question:
    kind: str
    image: object
    question: str
    tool: str
    answers: tuple[str, ...]


def questions() -> list[Question]:
    """Labelled questions over rendered receipts, signs, colour scenes and a scanned page."""
    from fixtures import PAGE_TITLE, render_receipt, render_sign, skimage_path
    from PIL import Image as PILImage
    from PIL import ImageDraw

    out: list[Question] = []
    receipts = [
        dict(items=(("Latte", "4.50"), ("Croissant", "3.25")), shop="CORNER CAFE"),
        dict(items=(("Tea", "2.10"), ("Muffin", "2.90"), ("Water", "1.00")), shop="TOWN BAKERY"),
        dict(items=(("Pasta", "11.50"), ("Salad", "7.25")), shop="LUIGI'S", address="3 Harbour Road"),
    ]
    for kw in receipts:
        r = render_receipt(**kw)
        items = kw["items"]
        total = r.lines[-2].split()[-1]
        out += [Question("receipt", r.image, "What is the total on this receipt?", "ocr", (total,)),
                Question("receipt", r.image, "What is the name of the shop?", "ocr", (kw["shop"],)),
                Question("receipt", r.image, f"How much was the {items[1][0].lower()}?", "ocr", (items[1][1],)),
                Question("receipt", r.image, "What is the first item on the receipt?", "ocr", (items[0][0],))]
    signs = [(("EXIT 24", "AIRPORT"), (0, 110, 60), "green"), (("STOP",), (200, 20, 20), "red"),
             (("CITY CENTRE", "2 KM"), (20, 60, 160), "blue")]
    for lines, bg, name in signs:
        s = render_sign(lines=lines, background=bg)
        out += [Question("sign", s.image, "What does the sign say?", "ocr", (lines[0], " ".join(lines))),
                Question("sign", s.image, "What colour is the sign?", "colors", (name,)),
                Question("sign", s.image, "What is the background colour of the sign?", "colors", (name,))]
    for name in ("red", "blue", "green", "yellow", "orange", "purple"):
        scene = PILImage.new("RGB", (320, 240), PALETTE[name])
        ImageDraw.Draw(scene).rectangle([20, 20, 80, 70], fill=(255, 255, 255))
        out += [Question("colour", scene, "What is the main colour of this image?", "colors", (name,)),
                Question("colour", scene, "Which colour covers most of the picture?", "colors", (name,))]
    page = PILImage.open(skimage_path("page.png")).convert("RGB")
    out += [Question("page", page, "What is the title of this page?", "ocr", (PAGE_TITLE,)),
            Question("page", page, "What is the first word of the title?", "ocr", (PAGE_TITLE.split()[0],))]
    return out


@dataclass
class Tally:
    runs: int = 0
    choice_steps: int = 0
    choice_failures: int = 0
    first_choice_runs: int = 0
    right_tool: int = 0
    answered: int = 0
    right_answer: int = 0
    grounded: int = 0
    steps: int = 0
    llm_seconds: float = 0.0


def run(agent, items: list[Question], label: str, show: int) -> Tally:  # noqa: ANN001
    from mmreact.eval.scorers import get_scorer

    scorer = get_scorer("default")
    t = Tally()
    per_tool: collections.Counter[tuple[str, str]] = collections.Counter()
    asked: collections.Counter[str] = collections.Counter()
    right_per_tool: collections.Counter[str] = collections.Counter()
    for i, q in enumerate(items):
        result = agent.run(q.question, q.image)
        t.runs += 1
        steps = result.trace.steps
        t.steps += len(steps)
        t.llm_seconds += sum(s.llm_seconds for s in steps)
        for s in steps:
            if s.choices is None or s.choices >= 2:  # unconstrained replies always had a choice
                t.choice_steps += 1
                t.choice_failures += s.error is not None
        first = steps[0] if steps else None
        if first is not None and (first.choices is None or first.choices >= 2):
            t.first_choice_runs += 1
            chosen = first.calls[0].tool if first.calls else "(answer)"
            per_tool[(q.tool, chosen)] += 1
            t.right_tool += chosen == q.tool
        asked[q.tool] += 1
        if result.answer is not None:
            t.answered += 1
            right = scorer(result.answer, list(q.answers)) >= 1.0
            t.right_answer += right
            right_per_tool[q.tool] += right
            check = result.trace.grounding
            t.grounded += check is not None and check.supported
        if i < show:
            calls = ",".join(c.tool for s in steps for c in s.calls)
            print(f"  [{label}] {q.kind:8} {q.question[:44]:44} [{calls}] -> {str(result)[:50]!r}")
    print(f"  [{label}] tool chosen per needed tool: "
          + ", ".join(f"{need}->{got}: {n}" for (need, got), n in sorted(per_tool.items())))
    print(f"  [{label}] right answers per needed tool: "
          + ", ".join(f"{need}: {right_per_tool[need]}/{n}" for need, n in sorted(asked.items())))
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm", default="default", help="the planner (default: the embedded default)")
    parser.add_argument("--free", action="store_true", help="also run with the grammar off (the model's own parse rate)")
    parser.add_argument("--free-n", type=int, default=12, help="questions for --free (evenly spread; a free 135M "
                        "model fills its token budget on every unusable reply, so all of them take long)")
    parser.add_argument("--show", type=int, default=6, help="print this many runs")
    parser.add_argument("--grounding", default="auto", help="Agent(grounding=...) for the grammar runs (default: auto)")
    args = parser.parse_args()

    from mmreact import Agent
    from mmreact.llms import load_llm
    from mmreact.tools.registry import resolve_tools

    started = time.perf_counter()
    items = questions()
    ocr = resolve_tools(["ocr"], ready_only=False)
    llm = load_llm(args.llm)
    agent = Agent(llm, tools=[*ocr, colors], grounding=args.grounding)
    print(f"LLM {llm.name}; tools: {', '.join(t.name for t in agent.tools)}; {len(items)} labelled questions "
          f"({collections.Counter(q.tool for q in items)})")
    results = {"grammar": run(agent, items, "grammar", args.show)}
    if args.free:
        from mmreact.llms.gguf import GGUFLLM

        if not isinstance(llm, GGUFLLM):
            parser.error("--free needs a gguf: or the default planner")
        free = GGUFLLM(llm.path, constrained=False, options=llm.options, name=llm.name + " (no grammar)")
        stride = max(1, len(items) // max(1, args.free_n))
        subset = items[::stride][: args.free_n]
        results["no grammar"] = run(Agent(free, tools=[*ocr, colors], system_prompt=agent.system_prompt,
                                          max_steps=4), subset, "no grammar", args.show)
    print()
    print(f"{'':12} {'runs':>5} {'parse failures (real choices)':>31} {'right tool':>12} {'right answer':>13}"
          f" {'grounded':>9} {'steps/run':>10} {'s/step':>7}")
    for label, t in results.items():
        failures = f"{t.choice_failures}/{t.choice_steps} = {t.choice_failures / max(t.choice_steps, 1):.1%}"
        tool_rate = f"{t.right_tool}/{t.first_choice_runs} = {t.right_tool / max(t.first_choice_runs, 1):.0%}"
        answer_rate = f"{t.right_answer}/{t.runs} = {t.right_answer / max(t.runs, 1):.0%}"
        grounded = f"{t.grounded}/{t.answered}"
        print(f"{label:12} {t.runs:5} {failures:>31} {tool_rate:>12} {answer_rate:>13} {grounded:>9} "
              f"{t.steps / max(t.runs, 1):10.2f} {t.llm_seconds / max(t.steps, 1):7.3f}")
    print(f"({time.perf_counter() - started:.0f} s in all, model loads included)")


if __name__ == "__main__":
    main()
