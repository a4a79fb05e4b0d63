"""What every question-answering system shares: ``run(question, images) -> result`` with ``.answer``
and ``.trace``, so that the tool-using :class:`mmreact.Agent` and an end-to-end multimodal model can
be evaluated, compared and combined alike.

Decisions:

* The result type is the agent's own :class:`mmreact.result.Result` (answer, trace, images), so code
  written for the agent (``.ok``, ``.status``, ``str(result)``) works unchanged on these systems.
* An end-to-end model answers in one step: the trace holds one :class:`~mmreact.trace.StepRecord`
  with the raw model text, the final answer (stripped), ``llm_seconds`` and the token counts;
  ``trace.llm`` names the model and its bridge, e.g. ``mllm:llava-1.5-7b-hf (projection)``.
* Model loading is not part of a question's timing: :meth:`EndToEndSystem.run` calls
  :meth:`~EndToEndSystem.load` (once per process) before the clock starts, so the first question
  costs the same as the others. Call ``load()`` yourself to time it.
* Images go through the same validation and handle table as the agent's (identical pixels given
  twice become one image), so both systems see the same inputs.
* Solved examples (:mod:`mmreact.fewshot`, ``examples=`` on each backend) are shown before the
  question as completed turns (images, question, answer) in the family's own chat format; a
  backend that cannot take them (one image per question) says so in one sentence when it is made.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from ..errors import ConfigError, LLMError, MMReactError, one_line
from ..images import Image, ImageSource, ImageTable
from ..result import Result
from ..trace import ImageRecord, StepRecord, Trace

if TYPE_CHECKING:
    from ..fewshot import Demonstrations

__all__ = ["Bridge", "EndToEndSystem", "Generation", "Result", "RunResult", "System", "as_sources"]

#: How image features reach the language model.
Bridge = Literal["projection", "q-former", "gated cross-attention", "other"]


@runtime_checkable
class RunResult(Protocol):
    """What ``System.run`` returns: at least an answer (``None`` when there is none) and a trace."""

    @property
    def answer(self) -> str | None: ...

    @property
    def trace(self) -> Trace: ...


@runtime_checkable
class System(Protocol):
    """Anything that answers a question about images: :class:`mmreact.Agent`, an end-to-end model,
    or a hybrid. ``images`` are paths, PIL images, numpy arrays or :class:`mmreact.Image` objects."""

    def run(self, question: str, images: Sequence[ImageSource] | ImageSource = ()) -> RunResult: ...


@dataclass(frozen=True)
class Generation:
    """One model reply: the raw text and what it cost."""

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def as_sources(images: Sequence[ImageSource] | ImageSource) -> list[ImageSource]:
    """One image or a sequence of images, as a list (the agent's rule: str/bytes are one image)."""
    if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
        return [images]
    return list(images)


class EndToEndSystem(abc.ABC):
    """Base of systems that answer with one model call (vision encoder -> bridge -> LLM).

    Subclasses set :attr:`name` and :attr:`bridge` and implement :meth:`generate`; they may
    override :meth:`load` (heavy loading, once) and :meth:`check_images` (how many images the
    model takes, checked before anything loads).
    """

    #: Short description for traces, e.g. ``"mllm:tiny-llava (projection)"``.
    name: str = "mllm"
    #: How many questions may usefully run at once from threads (``None``: no limit); the eval
    #: runner reads it.
    max_concurrency: int | None = None
    #: Solved examples shown before every question (:func:`mmreact.fewshot.for_model`), or ``None``.
    examples: Demonstrations | None = None

    def use_examples(self, examples: Any) -> None:
        """Show ``examples`` (a list of :class:`mmreact.fewshot.Example`, or a JSONL file) before every
        question; raises :class:`ConfigError` when this model cannot take them."""
        from ..fewshot import for_model

        shown = for_model(examples) if examples is not None else None
        if shown is not None:
            self.check_examples(shown)
        self.examples = shown

    def check_examples(self, examples: Demonstrations) -> None:
        """Raise :class:`ConfigError` when the model cannot be shown ``examples`` (the default takes any)."""

    @property
    def bridge(self) -> Bridge:
        return "other"

    def load(self) -> None:
        """Load heavy resources (once per process). The default loads nothing."""

    def check_images(self, count: int) -> None:
        """Raise :class:`ConfigError` when the model cannot take ``count`` images in one question."""

    @abc.abstractmethod
    def generate(self, question: str, images: Sequence[Image]) -> Generation:
        """Answer ``question`` about ``images`` in one model call."""

    def run(self, question: str, images: Sequence[ImageSource] | ImageSource = ()) -> Result:
        """Answer one question about ``images``; returns the same :class:`Result` as the agent."""
        if not isinstance(question, str) or not question.strip():
            raise ConfigError("The question is empty; ask something about the image(s).")
        table = ImageTable()
        handles = table.add_all(as_sources(images))  # validates all first; raises ImageError
        ordered = [table.get(h) for h in dict.fromkeys(handles)]
        pictures = [img for img in ordered if img is not None]
        self.check_images(len(pictures))
        self.load()
        started = time.perf_counter()
        records = tuple(
            ImageRecord(handle=h, source=img.source, width=img.width, height=img.height, sha256=img.sha256)
            for h, img in table.items()
        )

        def trace(steps: tuple[StepRecord, ...], answer: str | None) -> Trace:
            return Trace(
                question=question, images=records, steps=steps, answer=answer,
                status="answered" if answer is not None else "too_many_errors",
                message=None if answer is not None else f"{self.name} failed before answering.",
                llm=self.name, seconds=time.perf_counter() - started,
            )

        t0 = time.perf_counter()
        try:
            generation = self.generate(question, pictures)
        except LLMError as exc:
            raise exc.with_trace(trace((), None)) from None
        except MMReactError:
            raise
        except Exception as exc:  # a backend bug still gives one sentence and the trace
            raise LLMError(f"{self.name} failed: {one_line(exc)}", trace=trace((), None)) from exc
        seconds = time.perf_counter() - t0
        text = generation.text or ""
        answer = text.strip()
        step = StepRecord(
            index=1, llm_text=text, final_answer=answer, llm_seconds=seconds,
            prompt_tokens=generation.prompt_tokens, completion_tokens=generation.completion_tokens,
        )
        return Result(answer=answer, trace=trace((step,), answer), images=dict(table.items()))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
