"""How often do the embedded default's replies fail to parse? (It must be never.)

Runs the agent with the embedded default LLM (SmolLM2-135M, grammar-constrained) over varied
questions x images, built here: real photos from scikit-image and matplotlib, receipts and signs
rendered with PIL. Tools: mmreact's built-in experts that can run on this machine (``ocr`` with
the shipped EasyOCR English weights), or ``--tools`` to name them.

    python tools/parse_rate.py            # every pair (about 230)
    python tools/parse_rate.py --n 40     # a quick, evenly spread subset
    python tools/parse_rate.py --colors   # add a pure-Python colour tool, so the model must choose

Prints the share of replies that failed to parse, steps per question, seconds per step, the
run statuses, the tools called, and a few answers.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from mmreact import Image, tool  # noqa: E402 - light; resolves the colour tool's annotations

GENERIC = [
    "What is in this image?", "Describe the image.", "What is this?", "What colour is the background?",
    "What is the main colour of the image?", "How many people are in the image?", "Is there any text in the image?",
    "What does the text say?", "Is this photo taken indoors?", "Is there an animal in the picture?",
    "Is there a person in this image?", "How many objects can you see?", "What is written at the top?",
    "Is this a photograph or a document?", "What time of day is it?",
]
SPECIFIC = {
    "receipt": ["What is the total on this receipt?", "What is the name of the shop?", "How much was the latte?",
                "How many items were bought?", "What is the most expensive item?", "Is the total more than 10?",
                "What is the address on the receipt?", "What is the first item on the receipt?"],
    "sign": ["What does the sign say?", "Which exit number is shown?", "What colour is the sign?",
             "Where does this road lead?", "Is this a road sign?"],
    "astronaut.png": ["Who is the person in the photo?", "What is the person wearing?", "Is there a flag?"],
    "chelsea.png": ["What animal is this?", "What colour is the cat?", "Is the cat asleep?"],
    "coffee.png": ["What drink is in the cup?", "What colour is the cup?", "Is there a spoon?"],
    "rocket.jpg": ["What vehicle is shown?", "Is the rocket launching?", "What colour is the sky?"],
    "motorcycle_left.png": ["What vehicle is this?", "What colour is the motorcycle?"],
    "horse.png": ["What animal is shown?", "Is the horse running?"],
    "coins.png": ["How many coins are there?", "Are these coins?"],
    "camera.png": ["What is the man holding?", "Is the photo in colour?"],
    "page.png": ["What is the title of the page?", "What is this document about?", "Is this a scanned page?"],
    "text.png": ["What does the text say?", "Is this handwritten?"],
    "hubble_deep_field.jpg": ["What does this image show?", "Are these stars or galaxies?"],
    "grace_hopper.jpg": ["Who is in the photo?", "What is the person wearing?", "Is the person smiling?"],
}


def colors_tool() -> object:
    """A real, pure-Python tool: the dominant colours of an image (nearest named colour per pixel)."""
    names = {"black": (0, 0, 0), "white": (255, 255, 255), "grey": (128, 128, 128), "red": (200, 30, 30),
             "green": (30, 150, 50), "blue": (30, 60, 200), "yellow": (230, 210, 40), "orange": (240, 140, 30),
             "brown": (120, 80, 40), "pink": (240, 150, 180), "purple": (120, 50, 150)}

    @tool
    def colors(image: Image) -> str:
        """List the main colours of the image with their share of the pixels."""
        import numpy as np

        pixels = np.asarray(image.pil.resize((64, 64)), dtype=np.float32).reshape(-1, 1, 3)
        palette = np.array(list(names.values()), dtype=np.float32).reshape(1, -1, 3)
        nearest = ((pixels - palette) ** 2).sum(axis=2).argmin(axis=1)
        shares = collections.Counter(list(names)[i] for i in nearest.tolist())
        return "Main colours: " + ", ".join(f"{n} {c * 100 // len(nearest)}%" for n, c in shares.most_common(4))

    return colors


def images() -> list[tuple[str, object]]:
    """(kind, image) pairs: real photos, receipts and signs."""
    import matplotlib
    from fixtures import render_receipt, render_sign, skimage_path
    from PIL import Image as PILImage

    out: list[tuple[str, object]] = []
    for name in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "horse.png",
                 "coins.png", "camera.png", "page.png", "text.png", "hubble_deep_field.jpg"):
        out.append((name, PILImage.open(skimage_path(name)).convert("RGB")))
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    out.append(("grace_hopper.jpg", PILImage.open(hopper).convert("RGB")))
    receipts = [
        dict(),
        dict(items=(("Tea", "2.10"), ("Muffin", "2.90"), ("Water", "1.00")), shop="TOWN BAKERY"),
        dict(items=(("Pasta", "11.50"), ("Salad", "7.25")), shop="LUIGI'S", address="3 Harbour Road"),
    ]
    out += [("receipt", render_receipt(**kw).image) for kw in receipts]
    signs = [dict(), dict(lines=("STOP",), background=(200, 20, 20)),
             dict(lines=("CITY CENTRE", "2 KM"), background=(20, 60, 160))]
    out += [("sign", render_sign(**kw).image) for kw in signs]
    return out


def pairs() -> list[tuple[str, object, str]]:
    out = []
    for kind, image in images():
        questions = SPECIFIC.get(kind, []) + GENERIC[: 15 - len(SPECIFIC.get(kind, [])) // 2]
        out += [(kind, image, q) for q in questions]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=0, help="run an evenly spread subset of this many pairs (0: all)")
    parser.add_argument("--tools", default=None, help="comma-separated tool names (default: built-ins that can run)")
    parser.add_argument("--llm", default="default", help="LLM spec (default: the embedded default)")
    parser.add_argument("--colors", action="store_true", help="add a pure-Python colour tool")
    args = parser.parse_args()

    from mmreact import Agent
    from mmreact.llms import load_llm
    from mmreact.registry import parse_tool_list

    todo = pairs()
    if args.n and args.n < len(todo):
        stride = len(todo) / args.n
        todo = [todo[int(i * stride)] for i in range(args.n)]
    t_start = time.perf_counter()
    from mmreact.registry import resolve_tools

    tools: list[object] = list(resolve_tools(parse_tool_list(args.tools), ready_only=args.tools is None))
    if args.colors:
        tools.append(colors_tool())
    agent = Agent(load_llm(args.llm), tools=tools)
    print(f"LLM {agent.llm.name}; tools: {', '.join(t.name for t in agent.tools) or 'none'}; "
          f"{len(todo)} questions over {len({id(p[1]) for p in todo})} images")
    replies = failed = 0
    llm_seconds = tool_seconds = 0.0
    statuses: collections.Counter[str] = collections.Counter()
    tools_used: collections.Counter[str] = collections.Counter()
    examples: list[str] = []
    failures: list[str] = []
    t0 = time.perf_counter()
    for i, (kind, image, question) in enumerate(todo):
        result = agent.run(question, image)
        statuses[result.status] += 1
        for step in result.trace.steps:
            replies += 1
            llm_seconds += step.llm_seconds
            tool_seconds += step.tool_seconds or 0.0
            if step.error is not None:
                failed += 1
                failures.append(f"{kind} | {question} | {step.llm_text!r} | {step.error}")
            for call in step.calls:
                tools_used[call.tool] += 1
        if i % 9 == 0:
            calls = ",".join(c.tool for s in result.trace.steps for c in s.calls)
            examples.append(f"  {kind:21} {question:40} [{calls}] -> {str(result)[:60]}")
    wall = time.perf_counter() - t0
    n = len(todo)
    print(f"replies that failed to parse: {failed}/{replies} = {failed / max(replies, 1):.2%}")
    print(f"steps per question: {replies / n:.2f}")
    print(f"LLM seconds per step: {llm_seconds / max(replies, 1):.3f}; tool seconds per question: "
          f"{tool_seconds / n:.3f}; wall seconds per question: {wall / n:.2f} ({time.perf_counter() - t_start:.1f} s "
          "in all, model loads included)")
    print(f"statuses: {dict(statuses)}; tool calls: {dict(tools_used)}")
    print("some answers:")
    print("\n".join(examples))
    if failures:
        print("failures:")
        print("\n".join(failures[:20]))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
