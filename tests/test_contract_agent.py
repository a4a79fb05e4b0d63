"""What users of the LLM backends and the agent loop rely on (issue 25): under the embedded default's
settings a question about two images may be answered after one observation (the cap of one
observation per image forbids more calls, it never forces them), and a step in which one call fails
and another succeeds is a usable step, even with ``max_errors=1``."""

from __future__ import annotations

import numpy as np
import pytest
from llm_cases import _request, ocr

from mmreact import Agent, Image, ScriptedLLM, tool
from mmreact.llms import LLMRequest
from mmreact.errors import LLMError
from mmreact.llms.base import Completion
from mmreact.llms.grammar import EMBEDDED, step_grammar

RED = np.full((12, 16, 3), (255, 0, 0), dtype=np.uint8)
BLUE = np.full((10, 14, 3), (0, 0, 255), dtype=np.uint8)


class EmbeddedRules(ScriptedLLM):
    """A scripted model held to the embedded default's step language: a reply that grammar would not
    let the model write is an error (the real backend could never produce it)."""

    writes_thoughts = False

    def complete(self, request: LLMRequest) -> Completion:
        done = super().complete(request)
        if not step_grammar(request, EMBEDDED).accepts(done.text):
            raise LLMError(f"the embedded step language does not allow {done.text!r} here")
        return done


@tool
def colour(image: Image) -> str:
    """The image's mean colour."""
    r, g, b = image.to_numpy().reshape(-1, 3).mean(axis=0)
    return f"mean RGB ({r:.0f}, {g:.0f}, {b:.0f})"


# -- the embedded settings ---------------------------------------------------------------------------
def test_embedded_settings_allow_an_answer_after_one_observation_of_two_images():
    two = ("image_1", "image_2")
    after_one = step_grammar(_request(tools=(ocr,), handles=two, done={"ocr(image_1)"}, observations=1), EMBEDDED)
    assert after_one.allows_final and after_one.accepts("Final Answer: 7.75")
    assert after_one.accepts("Action: ocr(image_2)")  # the second image may still be looked at
    assert after_one.choices == 2 and after_one.forced_reply is None  # so nothing is forced
    fresh = step_grammar(_request(tools=(ocr,), handles=two), EMBEDDED)
    assert not fresh.allows_final  # the first step must act (the rule the answer is allowed after)
    after_two = step_grammar(_request(tools=(ocr,), handles=two, observations=2), EMBEDDED)
    assert after_two.allows_final and not after_two.allows_action  # one observation per image: done


def test_the_embedded_backend_does_not_force_a_second_call(tmp_path, monkeypatch):
    """The step the backend would write without the model: none here, the model decides."""
    pytest.importorskip("llama_cpp")
    from mmreact.llms.gguf import GGUFLLM

    monkeypatch.setenv("MMREACT_NATIVE_CHECK", "0")
    never_loaded = tmp_path / "never-loaded.gguf"
    never_loaded.write_bytes(b"GGUF" + b"\0" * 64)
    llm = GGUFLLM(never_loaded, options=EMBEDDED)
    two = ("image_1", "image_2")
    assert llm.forced_step(_request(tools=(ocr,), handles=two, done={"ocr(image_1)"}, observations=1)) is None
    forced = llm.forced_step(_request(tools=(ocr,), handles=two))  # the first step: it must act, and can
    assert forced is None or forced.text.startswith("Action: ")


def test_an_agent_with_embedded_rules_answers_about_two_images_after_one_observation():
    llm = EmbeddedRules(["Action: colour(image_1)", "Final Answer: red"])
    result = Agent(llm, tools=[colour], grounding="off").run("What colour is the first image?", [RED, BLUE])
    assert result.ok and result.answer == "red"
    assert [c.call for c in result.trace.calls] == ["colour(image_1)"]
    assert llm.requests[1].handles == ("image_1", "image_2")


# -- mixed steps ----------------------------------------------------------------------------------------
@tool
def broken(image: Image) -> str:
    """A tool whose sensor fails."""
    raise RuntimeError("sensor on fire")


@pytest.mark.parametrize("failing", ["colour(image_9)", "broken(image_1)", "nosuch(image_1)"])
def test_a_step_where_one_call_fails_and_another_succeeds_is_usable(failing):
    llm = ScriptedLLM([f"Thought: look twice.\nAction: colour(image_1)\nAction: {failing}",
                       "Thought: the colour call worked.\nFinal Answer: red"])
    result = Agent(llm, tools=[colour, broken], max_errors=1, prefetch="none").run("What colour?", [RED])
    assert result.ok and result.answer == "red", result.message
    (step, answer) = result.trace.steps
    assert [c.error for c in step.calls] == [False, True] and step.error is None
    assert answer.final_answer == "red"


def test_a_step_where_every_call_fails_is_unusable():
    llm = ScriptedLLM(["Action: broken(image_1)\nAction: colour(image_9)", "Final Answer: red"])
    result = Agent(llm, tools=[colour, broken], max_errors=1, prefetch="none").run("What colour?", [RED])
    assert result.status == "too_many_errors" and result.answer is None
    assert result.message == "Stopped after 1 unusable steps in a row (last problem: every call failed)."


def test_a_mixed_step_resets_the_count_of_unusable_steps():
    llm = ScriptedLLM(["nonsense", "Action: colour(image_1)\nAction: broken(image_1)", "nonsense",
                       "Final Answer: red"])
    result = Agent(llm, tools=[colour, broken], max_errors=2, prefetch="none").run("What colour?", [RED])
    assert result.ok and [s.error is not None for s in result.trace.steps] == [True, False, True, False]
    assert result.trace.steps[1].calls[0].text == "mean RGB (255, 0, 0)"
