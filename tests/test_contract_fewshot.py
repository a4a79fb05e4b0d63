"""What users of solved examples (mmreact.fewshot) rely on (issue 25): examples that differ only in
their images never share a fingerprint (eval results made with them are never mixed), and
``image_0`` in an example step is refused at creation instead of naming some other image."""

from __future__ import annotations

import numpy as np
import pytest

from mmreact import Agent, ConfigError, Image, ScriptedLLM, tool
from mmreact.eval.fingerprint import system_settings
from mmreact.fewshot import Example, for_agent, for_model

#: Two images of the same size that differ only in their pixels.
DARK = np.full((10, 14, 3), 20, dtype=np.uint8)
LIGHT = np.full((10, 14, 3), 230, dtype=np.uint8)


@pytest.fixture(autouse=True)
def empty_result_cache():
    from mmreact.cache import result_cache

    result_cache().clear()


def size_tool(runs: list[str] | None = None):
    @tool(cacheable=True)
    def size(image: Image) -> str:
        """The image's size (the same for both images here)."""
        if runs is not None:
            runs.append(image.sha256)
        return f"{image.width}x{image.height} pixels"

    return size


def examples(image: np.ndarray, *, steps: bool = True) -> list[Example]:
    return [Example("How big is it?", "14 by 10", [image], ["size(image_1)"] if steps else (), id="big")]


@pytest.mark.parametrize("steps", [True, False])
def test_examples_that_differ_only_in_their_images_have_different_fingerprints(steps):
    size = size_tool()
    llm = ScriptedLLM(["Final Answer: x"])
    dark, light = for_agent(examples(DARK, steps=steps), [size], llm), for_agent(examples(LIGHT, steps=steps), [size], llm)
    assert dark is not None and light is not None
    assert dark.text() == light.text()  # the model is shown the same words ...
    assert dark.fingerprint != light.fingerprint  # ... about other pixels
    assert for_agent(examples(DARK.copy(), steps=steps), [size], llm).fingerprint == dark.fingerprint
    model_dark, model_light = for_model(examples(DARK, steps=steps)), for_model(examples(LIGHT, steps=steps))
    assert model_dark.fingerprint != model_light.fingerprint
    assert for_model(examples(DARK.copy(), steps=steps)).fingerprint == model_dark.fingerprint
    # and so the eval fingerprint of the agent that shows them
    with_dark = system_settings(Agent(llm, tools=[size], examples=examples(DARK, steps=steps)))
    with_light = system_settings(Agent(llm, tools=[size], examples=examples(LIGHT, steps=steps)))
    assert with_dark["examples"]["digest"] != with_light["examples"]["digest"]


@pytest.mark.parametrize("call", ["size(image_0)", "size(image=image_0)", "size(image_00)"])
def test_image_0_in_an_example_step_is_an_error(call):
    runs: list[str] = []
    size = size_tool(runs)
    two = Example("Which is bigger?", "the same", [DARK, LIGHT], [call], id="zero")
    with pytest.raises(ConfigError) as info:
        Agent(ScriptedLLM(["Final Answer: x"]), tools=[size], examples=[two])
    message = str(info.value)
    assert "Example 1 ('zero')" in message and "names the image 'image_0" in message
    assert "the example's images are image_1, image_2" in message and "\n" not in message
    assert runs == []  # refused before any tool ran
