"""Shared cases for the local LLM backends' tests: tools of every argument kind, step requests,
and candidate replies for checking that two engines accept the same strings."""

from __future__ import annotations

import random
from typing import Literal

from mmreact import Image, tool
from mmreact.llms.base import LLMRequest, Message
from mmreact.prompts import system_prompt

RECEIPT_TEXT = "CORNER CAFE\nLatte 4.50\nCroissant 3.25\nTOTAL 7.75\nThank you!"


@tool
def ocr(image: Image) -> str:
    """Read the text in the image, line by line."""
    return RECEIPT_TEXT


@tool
def caption(image: Image) -> str:
    """Describe the image in one sentence."""
    return "a paper receipt on a wooden table"


@tool
def zoom(image: Image, side: Literal["top", "bottom"], flag: bool) -> str:
    """Zoom into one side of the image."""
    return "zoomed"


@tool
def lookup(image: Image, word: str, times: int) -> str:
    """A tool with free-form literal arguments."""
    return "ok"


@tool
def listy(image: Image, words: list[str]) -> str:
    """A tool with a list argument."""
    return "ok"


@tool
def detect(image: Image, min_confidence: float = 0.25, classes: list[str] | None = None) -> str:
    """A tool with optional arguments."""
    return "ok"


@tool
def mapping(image: Image, pairs: list[list[str]]) -> str:
    """A tool the grammar cannot constrain (a list of lists)."""
    return "ok"


def _request(tools=(ocr, caption), handles=("image_1",), done=(), observations=0, question="What is the total?"):
    messages = [Message("system", system_prompt(list(tools))), Message("user", f"Question: {question}")]
    for _ in range(observations):
        messages += [Message("assistant", "Thought: look\nAction: ocr(image_1)"),
                     Message("observation", "<observation>x</observation>")]
    return LLMRequest(messages=tuple(messages), tools=tuple(tools), handles=tuple(handles), done_calls=frozenset(done),
                      kind="react")


def _candidates(rng: random.Random, thought_rate: float = 0.85) -> list[str]:
    thoughts = ["I need the text.", "x", " ".join(["word"] * 25), "a" * 999, "a" * 1000, "two  spaces", "tab\there",
                "", " lead"]
    calls = ["ocr(image_1)", "ocr(image_2)", "caption(image_1)", "caption(image_2)", "caption(image_3)", "ocr()",
             "zoom(image_1, 'top', True)", "zoom(image_1, 'top', False)", "zoom(image_2, 'left', True)",
             "lookup(image_1, 'red car', 3)", "lookup(image_1, 'x', 3.5)", "lookup(image_1, \"x\", 3)",
             "listy(image_1, ['a'])", "listy(image_1, ['a', 'b'])", "listy(image_1, [1])", "OCR(image_1)",
             "detect(image_1)", "detect(image_2, min_confidence=0.5)", "detect(image_1, classes=['dog'])",
             "detect(image_1, min_confidence=0.5, classes=[])", "detect(image_1, classes=['dog'], min_confidence=1)"]
    answers = ["7.75", "The total is 7.75.", "", " lead", "a" * 199, "a" * 200, "a" * 2000, "a" * 2001,
               "two\nlines", "ünïcödé ok"]
    out = []
    for _ in range(120):
        head = f"Thought: {rng.choice(thoughts)}\n" if rng.random() < thought_rate else ""
        if rng.random() < 0.55:
            out.append(head + "\n".join(f"Action: {rng.choice(calls)}" for _ in range(rng.choice((1, 1, 2, 5)))))
        else:
            out.append(f"{head}Final Answer: {rng.choice(answers)}")
    out += ["Action: ocr(image_1)", "Final Answer: 7.75", "Thought: x\nAction: ocr(image_1)\n", "Thought: x\n"]
    return out
