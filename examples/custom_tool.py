"""Write a tool with ``@tool`` and hand it to an agent.

    python examples/custom_tool.py [--llm SPEC] [--out squares_annotated.png]

The tool below is plain Python (numpy): it finds solid squares of one colour and returns text for
the model plus an artifact with boxes, in the same ``{"objects": [...]}`` shape the detection expert
uses, so ``result.annotated()`` draws them. Its name, description and argument schema come from the
signature and docstring; the model calls it as ``colour_boxes(image_1, colour='blue')``.

By default the "LLM" is a two-line script: it calls the tool, then answers with the first line of
what the tool returned (a function of the request, so the answer comes from the real tool output).
Pass ``--llm default`` or ``--llm openai:MODEL`` to let a model decide.
"""

from __future__ import annotations

import argparse
import re
from collections import deque
from typing import Literal

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

from mmreact import Agent, Image, Observation, ScriptedLLM, tool
from mmreact.llms import LLMRequest

CHANNELS = {"red": 0, "green": 1, "blue": 2}


def _components(mask: np.ndarray) -> list[list[int]]:
    """Bounding boxes ``[x1, y1, x2, y2]`` of the 4-connected regions of ``mask``."""
    seen = np.zeros_like(mask, dtype=bool)
    boxes = []
    for y, x in zip(*np.nonzero(mask), strict=True):
        if seen[y, x]:
            continue
        seen[y, x] = True
        queue, x1, y1, x2, y2 = deque([(y, x)]), x, y, x, y
        while queue:
            cy, cx = queue.popleft()
            x1, y1, x2, y2 = min(x1, cx), min(y1, cy), max(x2, cx), max(y2, cy)
            for ny, nx in ((cy + 1, cx), (cy - 1, cx), (cy, cx + 1), (cy, cx - 1)):
                if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
        boxes.append([int(x1), int(y1), int(x2) + 1, int(y2) + 1])
    return boxes


@tool
def colour_boxes(image: Image, colour: Literal["red", "green", "blue"] = "red", min_size: int = 4) -> Observation:
    """Find solid patches of one pure colour and give their boxes.

    Args:
        colour: which colour to look for
        min_size: ignore patches narrower or shorter than this many pixels
    """
    rgb = image.to_numpy().astype(int)
    c = CHANNELS[colour]
    others = [i for i in range(3) if i != c]
    mask = (rgb[..., c] > 150) & (rgb[..., others].max(axis=-1) < 100)
    boxes = [b for b in _components(mask) if b[2] - b[0] >= min_size and b[3] - b[1] >= min_size]
    lines = [f"Found {len(boxes)} {colour} patch{'es' if len(boxes) != 1 else ''}."]
    lines += [f"{colour} patch at [{', '.join(map(str, b))}]" for b in boxes]
    objects = [{"label": f"{colour} patch", "confidence": 1.0, "box": b} for b in boxes]
    return Observation(text="\n".join(lines), artifact={"objects": objects})


def squares() -> PILImage.Image:
    """A test picture: two blue squares, one red square, one green circle."""
    img = PILImage.new("RGB", (320, 200), (245, 245, 240))
    draw = ImageDraw.Draw(img)
    draw.rectangle((30, 40, 90, 100), fill=(20, 40, 220))
    draw.rectangle((200, 110, 260, 170), fill=(20, 40, 220))
    draw.rectangle((130, 30, 170, 70), fill=(220, 20, 30))
    draw.ellipse((120, 120, 170, 170), fill=(20, 180, 40))
    return img


def answer_from_tool(request: LLMRequest) -> str:
    """The scripted model's second reply: the first line of the last observation."""
    text = request.messages[-1].content
    found = re.search(r"Found [^\n]*", text)
    return f"Thought: the tool counted them.\nFinal Answer: {found.group(0) if found else 'I could not tell.'}"


def main() -> None:
    parser = argparse.ArgumentParser(description="An agent that uses a tool written with @tool.")
    parser.add_argument("--llm", default=None, help="LLM spec (default: a two-step script)")
    parser.add_argument("--out", default="squares_annotated.png", help="where to save the annotated image")
    args = parser.parse_args()

    print("tool:", colour_boxes.usage())  # colour_boxes(image: image, colour: 'red'|'green'|'blue' = 'red', ...)
    print("description:", colour_boxes.description, end="\n\n")

    llm = args.llm or ScriptedLLM(["Thought: count the blue squares.\nAction: colour_boxes(image_1, colour='blue')",
                                   answer_from_tool])
    agent = Agent(llm=llm, tools=[colour_boxes])
    result = agent.run("How many blue squares are there?", images=[squares()])
    print(result.trace.pretty())
    result.annotated().save(args.out)
    print(f"\nAnswer: {result.answer}\nannotated image: {args.out}")


if __name__ == "__main__":
    main()
