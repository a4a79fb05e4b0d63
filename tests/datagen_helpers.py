"""Shared by the datagen tests: image folders and a scripted LLM whose replies plant faults.

The scripted replies are functions of the request (the kind is read from the system message, the
facts from the context), so the same image gets the same reply whatever order the engine runs it
in (the Ray engine's order is not the local one's).
"""

from __future__ import annotations

import json
from pathlib import Path

from fixtures import render_receipt, render_sign
from PIL import Image

from mmreact.llms import LLM, Completion, LLMRequest, ScriptedLLM


def image_folder(root: Path, *, duplicate: bool = True, broken: bool = True) -> Path:
    """receipt.png and sign.png (real text for the real OCR), a copy of the receipt in a subfolder
    (same pixels), and a file that is not an image."""
    folder = root / "images"
    (folder / "sub").mkdir(parents=True)
    render_receipt().save(folder / "receipt.png")
    render_sign(("NO PARKING", "MON FRI")).save(folder / "sign.png")
    if duplicate:
        render_receipt().save(folder / "sub" / "receipt_copy.png")
    if broken:
        (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return folder


def tiny_images(folder: Path, n: int) -> list[str]:
    """``n`` small images with distinct pixels, and their names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        name = f"img{i:03d}.png"
        Image.new("RGB", (40, 30), (i * 7 % 256, 90, 200)).save(folder / name)
        names.append(name)
    return names


def kind_of(request: LLMRequest) -> str:
    system = request.messages[0].content
    if system.startswith("You will receive a paragraph"):
        return "cleanup"
    if "Write a conversation" in system:
        return "conversation"
    if "Describe the image in detail" in system:
        return "detail"
    return "reasoning"


def context_of(request: LLMRequest) -> str:
    return request.messages[-1].content


def first_text_line(context: str) -> str:
    lines = context.split("Text in the image:\n", 1)
    return lines[1].splitlines()[0] if len(lines) == 2 else "nothing"


def planted_reply(request: LLMRequest) -> str:
    """Conversation: one good pair, then a hallucinated dog, leaked coordinates and an apology.
    Detail: a description that names its source (leakage); cleanup fixes that. Reasoning: a good
    pair for the receipt; text outside the blocks for the sign (structure)."""
    kind, context = kind_of(request), context_of(request)
    top = first_text_line(context)
    if kind == "conversation":
        return (f"Question:\nWhat does the top line say?\n===\nAnswer:\nThe top line says {top}.\n===\n"
                "Question:\nIs there a dog?\n===\nAnswer:\nYes, a dog sits by the counter.\n===\n"
                "Question:\nWhere is the text?\n===\nAnswer:\nThe text is at [0.1, 0.2, 0.9, 0.3].\n===\n"
                "Question:\nWhat is the price?\n===\nAnswer:\nI'm sorry, I cannot see the image.")
    if kind == "detail":
        return f"The caption says this image shows {top}."
    if kind == "cleanup":  # the last message is the raw description
        return f"The image shows {context.rsplit('shows ', 1)[-1].rstrip('.')} in large letters."
    if "PARKING" in context:
        return "Sure! Here is one.\nQuestion:\nWhen is parking allowed?\n===\nAnswer:\nAt the weekend."
    return f"Question:\nWhat is the name at the top?\n===\nAnswer:\nThe name at the top is {top}."


def planted_llm() -> ScriptedLLM:
    return ScriptedLLM([planted_reply], repeat_last=True, name="scripted:planted")


class CountingLLM(LLM):
    """A scripted LLM that reports token counts (as real backends do), for cost accounting."""

    name = "scripted:counting"

    def __init__(self, prompt_tokens: int = 1000, completion_tokens: int = 100) -> None:
        self.usage = (prompt_tokens, completion_tokens)
        self.calls = 0

    def complete(self, request: LLMRequest) -> Completion:
        self.calls += 1
        return Completion("Question:\nWhat colour is it?\n===\nAnswer:\nIt is blue.", prompt_tokens=self.usage[0],
                          completion_tokens=self.usage[1])


def annotations_file(path: Path, names: list[str]) -> Path:
    """A JSONL of contexts: a caption and two cups per image."""
    with open(path, "w") as f:
        for name in names:
            f.write(json.dumps({"image": name, "captions": ["Two blue cups on a table."],
                                "objects": [{"label": "cup", "box": [1, 1, 10, 10]},
                                            {"label": "cup", "box": [20, 5, 30, 20]}]}) + "\n")
    return path
