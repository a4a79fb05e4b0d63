"""The tool-using agent and an end-to-end multimodal model on the same questions.

    python examples/compare.py                                         # offline: see below
    python examples/compare.py --mllm mllm:llava-hf/llava-1.5-7b-hf    # a LLaVA checkpoint you have
    python examples/compare.py --llm openai:gpt-4o-mini --mllm openai-vision:gpt-4o-mini
    python examples/compare.py --mllm mllm:PATH_A --mllm mllm:PATH_B               # several at once

Both systems share one interface, ``run(question, images) -> result`` with ``.answer`` and
``.trace`` (``mmreact.mllm.System``), so the loop below treats them alike.

Offline defaults, stated plainly: no end-to-end model's weights ship in any package, so unless
``--mllm`` names one you have, that column says why it could not run (one sentence) and the agent
runs alone. The agent's "LLM" defaults to :func:`receipt_reader`, a few lines of rules standing
in for a model: it asks for OCR, then answers from the real OCR lines. ``--llm`` swaps in a model.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path
from typing import Any

from mmreact import Agent, MMReactError, ScriptedLLM
from mmreact.llms import LLMRequest
from mmreact.mllm import load_system

HERE = Path(__file__).resolve().parent
QUESTIONS = [
    ("What is the total on this receipt?", "7.75"),
    ("How much does the croissant cost?", "2.75"),
    ("What is the name of the cafe?", "corner cafe"),
]
_OCR_LINE = re.compile(r"^(?P<text>.+?) \[\d+, \d+, \d+, \d+\]( \(unsure\))?$", re.MULTILINE)
_STOP = {"what", "this", "that", "does", "much", "name", "receipt", "cost", "how", "the"}


def receipt_reader(request: LLMRequest) -> str:
    """A rule-based stand-in for an LLM: call OCR, then answer with the number (or the text) of
    the OCR line that shares a word with the question."""
    last = request.messages[-1]
    if last.role != "observation":
        return "Thought: I need to read the receipt.\nAction: ocr(image_1)"
    question = next(m.content for m in reversed(request.messages) if m.role == "user").lower()
    words = {w for w in re.findall(r"[a-z]+", question.split("question:")[-1]) if len(w) > 3 and w not in _STOP}
    for line in _OCR_LINE.finditer(last.content):
        text = line.group("text")
        if words & set(re.findall(r"[a-z]+", text.lower())):
            number = re.findall(r"\d+\.\d+", text)
            return f"Thought: the line '{text}' answers it.\nFinal Answer: {number[-1] if number else text}"
    return "Thought: no OCR line matches the question.\nFinal Answer: I cannot tell from the text."


def ask(system: Any, question: str, image: Path) -> tuple[str, float]:
    """(answer or the one-sentence reason there is none, seconds)."""
    t0 = time.perf_counter()
    try:
        result = system.run(question, [image])
    except MMReactError as exc:
        return f"unavailable: {exc}", time.perf_counter() - t0
    answer = result.answer if result.answer is not None else f"no answer ({result.trace.status})"
    return answer, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description="Agent vs end-to-end model on the same questions.")
    parser.add_argument("--llm", default=None, help="the agent's LLM spec (default: the rule-based reader)")
    parser.add_argument("--mllm", action="append", default=None,
                        help="end-to-end system spec (repeat for several; default: mllm:llava-hf/llava-1.5-7b-hf)")
    args = parser.parse_args()

    agent = Agent(llm=args.llm or ScriptedLLM([receipt_reader], repeat_last=True), tools=["ocr"])
    systems: dict[str, Any] = {"agent (tools)": agent}
    for spec in args.mllm or ["mllm:llava-hf/llava-1.5-7b-hf"]:
        name = spec.split(":", 1)[-1].rstrip("/").split("/")[-1][:24]  # e.g. llava-1.5-7b-hf
        try:
            systems[name] = load_system(spec)
        except MMReactError as exc:
            systems[name] = None
            print(f"{name}: unavailable: {exc}")
    width = max(map(len, systems))

    image = HERE / "receipt.png"
    score = dict.fromkeys(systems, 0)
    for question, expected in QUESTIONS:
        print(f"\nQ: {question}   (expected: {expected})")
        for name, system in systems.items():
            if system is None:
                print(f"  {name:{width}s} -")
                continue
            answer, seconds = ask(system, question, image)
            ok = expected in answer.lower()
            score[name] += ok
            print(f"  {name:{width}s} {'OK ' if ok else 'no '} {answer}  ({seconds:.2f} s)")
    print("\nscore: " + ", ".join(f"{name} {n}/{len(QUESTIONS)}" if systems[name] is not None else f"{name} n/a"
                                 for name, n in score.items()))


if __name__ == "__main__":
    main()
