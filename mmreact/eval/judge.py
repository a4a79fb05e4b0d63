"""The LLM judge: MM-Vet's few-shot grading prompt, sent to any mmreact LLM as a plain text reply.

Decisions:

* The judge model is always named (``judge:LLMSPEC``); a bare ``judge`` is refused, so a score
  never silently comes from whatever the default LLM is.
* It is called with ``LLMRequest(kind="text", text_format=SCORE_FORMAT)``: no agent step grammar.
  Backends that enforce a reply language (llama.cpp, transformers) can then only write one of
  the eleven scores 0.0, 0.1, ..., 1.0; the others are asked for it in the prompt.
* The score is read from the reply's **final non-empty line** only, and only when that line is a
  score: a bare number ("0.7", "7/10", "70%", "8 out of 10"), a labelled one ("Score: 0.7",
  "Final Answer: 0.5", "Correctness: 1.0 because ..."), or a table row's last cell. Reasoning
  before it is ignored: "Thought: 1 of the 2 parts is right\\nFinal Answer: 0.5" scores 0.5. A
  reply whose last line is not a score is retried, then recorded as a ``score_error``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..llms.formats import TextFormat, one_of
from .scorers import ScoreError, Scorer

if TYPE_CHECKING:
    from ..llms.base import LLM
    from ..qa import QAItem as EvalItem

JUDGE_PROMPT = """\
Compare the ground truth and the prediction from an AI model, and give a correctness score for \
the prediction. <AND> in the ground truth means the prediction is fully right only when every \
element joined by <AND> is present; <OR> means that any one element is enough. The correctness \
score is 0.0 (totally wrong), 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9 or 1.0 (totally right). \
Reply with the score only: complete the last row of the table.

Question | Ground truth | Prediction | Correctness
--- | --- | --- | ---
How many coins are there? | 24 | There are 24 coins. | 1.0
How many coins are there? | 24 | I can see about 20 coins. | 0.0
What is x in the equation? | -1 <AND> -5 | x = 3 | 0.0
What is x in the equation? | -1 <AND> -5 | x = -1 | 0.5
What is x in the equation? | -1 <AND> -5 | x = -1 or x = -5 | 1.0
What colour is the car? | red <OR> dark red | The car is maroon. | 0.8
Describe the picture. | A cat asleep on a sofa beside a window. | A cat lying on a couch. | 0.7
Describe the picture. | A cat asleep on a sofa beside a window. | A dog running on grass. | 0.0
{question} | {truth} | {prediction} | """

SCORES = tuple(f"{k / 10:.1f}" for k in range(11))
#: The reply language local backends enforce: one of the eleven scores.
SCORE_FORMAT = TextFormat(one_of(*SCORES), name="judge-score")

_NUM = r"(\d+(?:\.\d+)?|\.\d+)(?:\s*/\s*(\d+(?:\.\d+)?)|\s*(%)|\s+out\s+of\s+(\d+(?:\.\d+)?))?"
_LABEL = r"(?:(?:final\s+)?(?:answer|score|correctness(?:\s+score)?|rating|grade))"
_BARE = re.compile(rf"^{_NUM}\s*[.!]?$", re.I)
_LABELLED = re.compile(rf"^(?:(?:the|my)\s+)?{_LABEL}\s*(?:is|of|=|:)?\s*(?:is\s*)?{_NUM}(?!\s*(?:/|of\b|out\s+of)\s*\d)(?:\W.*)?$", re.I)


def _value(m: re.Match[str]) -> float | None:
    value = float(m.group(1))
    denominator = m.group(2) or m.group(4)
    if denominator:
        d = float(denominator)
        value = value / d if d > 0 else -1.0
    elif m.group(3):
        value /= 100
    return value if 0.0 <= value <= 1.0 else None


def parse_judge_score(text: str) -> float | None:
    """The 0-1 score on a judge reply's final non-empty line, else ``None`` (see the module's decisions)."""
    lines = [ln for ln in (text or "").splitlines() if ln.strip()]
    if not lines:
        return None
    line = lines[-1].strip()
    if "|" in line:  # the table row completed: its last non-empty cell
        cells = [c.strip() for c in line.split("|") if c.strip()]
        line = cells[-1] if cells else ""
    line = re.sub(r"[*_`>#]+", "", line).strip()
    line = re.sub(r"(?i)\(\s*out\s+of\s+\d+(?:\.\d+)?\s*\)", " ", line)
    line = " ".join(line.split())
    m = _BARE.match(line) or _LABELLED.match(line)
    return _value(m) if m else None


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "/")


class JudgeScorer(Scorer):
    """An LLM grades the prediction 0.0-1.0, few-shot, in MM-Vet's style.

    Unparseable replies are retried ``retries`` times; after that :class:`ScoreError` is raised
    (the runner records the item as ``score_error`` rather than silently scoring 0).
    """

    name = "judge"

    def __init__(self, llm: LLM | str, retries: int = 2, max_tokens: int = 64) -> None:
        from ..llms import load_llm

        if llm is None or (isinstance(llm, str) and not llm.strip()):
            raise ConfigError("The judge scorer needs a judge model: write judge:LLMSPEC, e.g. judge:openai:gpt-4o-mini.")
        self.llm = load_llm(llm)
        self.retries = retries
        self.max_tokens = max_tokens
        self.name = f"judge:{self.llm.name}"

    def prompt(self, prediction: str, answers: Sequence[str], item: EvalItem | None) -> str:
        question = item.question if item is not None else ""
        return JUDGE_PROMPT.format(question=_cell(question), truth=_cell(" <OR> ".join(answers)),
                                   prediction=_cell(prediction))

    def score(self, prediction: str | None, answers: Sequence[str], item: EvalItem | None = None) -> float:
        from ..llms.base import LLMRequest, Message

        if prediction is None or not prediction.strip():
            return 0.0
        request = LLMRequest(messages=(Message("user", self.prompt(prediction, answers, item)),),
                             max_tokens=self.max_tokens, kind="text", text_format=SCORE_FORMAT)
        reply = ""
        for _ in range(self.retries + 1):
            reply = self.llm.complete(request).text or ""
            value = parse_judge_score(reply)
            if value is not None:
                return value
        last = [ln for ln in reply.splitlines() if ln.strip()]
        shown = _cell(last[-1] if last else reply)[:120]
        raise ScoreError(f"The judge's last line held no score between 0 and 1: {shown!r}.")

    __call__ = score
