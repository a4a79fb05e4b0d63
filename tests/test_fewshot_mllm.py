"""Solved examples for end-to-end models: each family's interleaved input, built by its real
processor on tiny random models of the real architectures (tests/mllm_tiny.py), checked against the
family's documented prompt; the number of image tokens matches the number of images; BLIP-2 and
InstructBLIP refuse in one sentence; OpenAI vision sends completed turns to a loopback server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mmreact import ConfigError
from mmreact.eval.fingerprint import system_settings
from mmreact.mllm import load_system
from mmreact.fewshot import Example

QUESTION = "what is this?"
NEW_TOKENS = 4


@pytest.fixture(scope="module")
def pictures() -> list[Any]:
    """Three real photographs (a cat, a cup of coffee, a rocket)."""
    from fixtures import skimage_path
    from PIL import Image as PILImage

    return [PILImage.open(skimage_path(n)).convert("RGB") for n in ("chelsea.png", "coffee.png", "rocket.jpg")]


@pytest.fixture(scope="module")
def examples(pictures: list[Any]) -> list[Example]:
    """One example with one image, one with two: three example images, then one query image."""
    return [Example("what animal is this?", "cat", [pictures[0]], id="one"),
            Example("which one is a drink?", "the second", [pictures[2], pictures[1]], id="two")]


LLAVA_SHOTS = ("USER: <image>\nwhat animal is this? ASSISTANT: cat</s>"
               "USER: <image>\n<image>\nwhich one is a drink? ASSISTANT: the second</s>"
               f"USER: <image>\n{QUESTION} ASSISTANT:")


def _reference(kind: str, path: Path, pictures: list[Any]) -> tuple[dict[str, Any], str]:
    """The inputs and the answer straight from transformers, with the family's documented few-shot format."""
    import torch
    import transformers

    classes = {"llava": "LlavaForConditionalGeneration", "llava_next": "LlavaNextForConditionalGeneration",
               "idefics": "IdeficsForVisionText2Text", "vipllava": "VipLlavaForConditionalGeneration"}
    model = getattr(transformers, classes[kind]).from_pretrained(path).eval()
    processor = transformers.AutoProcessor.from_pretrained(path)
    shown = [pictures[0], pictures[2], pictures[1]]
    if kind == "idefics":  # IDEFICS's model card: a list of strings and images, turns ended by <end_of_utterance>
        prompts = ["User:", pictures[0], "what animal is this?", "<end_of_utterance>",
                   "\nAssistant: cat<end_of_utterance>",
                   "\nUser:", pictures[2], pictures[1], "which one is a drink?", "<end_of_utterance>",
                   "\nAssistant: the second<end_of_utterance>",
                   "\nUser:", pictures[1], QUESTION, "<end_of_utterance>", "\nAssistant:"]
        inputs = processor(text=prompts, add_end_of_utterance_token=False, return_tensors="pt")
        extra: dict[str, Any] = {"bad_words_ids": [[processor.tokenizer.convert_tokens_to_ids(t)]
                                                   for t in ("<image>", "<fake_token_around_image>")]}
    else:
        inputs = processor(images=[*shown, pictures[1]], text=LLAVA_SHOTS, return_tensors="pt")
        extra = {}
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False,
                             suppress_tokens=model.generation_config.suppress_tokens, **extra)
    n = inputs["input_ids"].shape[1]
    return dict(inputs), processor.tokenizer.decode(out[0, n:], skip_special_tokens=True).strip()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["llava", "llava_next", "idefics", "vipllava"])
def test_each_family_interleaves_the_examples(kind: str, tiny_dirs: dict[str, Path], pictures: list[Any],
                                              examples: list[Example]) -> None:
    import torch

    system = load_system(f"mllm:{tiny_dirs[kind]}", max_new_tokens=NEW_TOKENS, examples=examples)
    processor = system._parts()[1]
    inputs, _ = system._inputs(processor, QUESTION, [pictures[1]])
    expected, answer = _reference(kind, tiny_dirs[kind], pictures)
    assert torch.equal(inputs["input_ids"], expected["input_ids"])
    assert torch.equal(inputs["pixel_values"], expected["pixel_values"])
    ids = inputs["input_ids"][0]
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    if kind == "idefics":
        assert int((ids == image_id).sum()) == 4  # one <image> token per image: 3 shown + 1 asked
        assert inputs["pixel_values"].shape[1] == 4 and inputs["image_attention_mask"].shape[-1] == 4
    elif kind == "llava_next":
        assert inputs["pixel_values"].shape[0] == 4
        assert int((ids == image_id).sum()) == sum(
            int((processor(images=[p], text="<image>", return_tensors="pt")["input_ids"][0] == image_id).sum())
            for p in (pictures[0], pictures[2], pictures[1], pictures[1]))
    else:
        per_image = system._parts()[0].config.image_seq_length
        assert int((ids == image_id).sum()) == 4 * per_image and inputs["pixel_values"].shape[0] == 4
    result = system.run(QUESTION, [pictures[1]])
    assert result.answer == answer and result.answer
    assert [img.width for img in result.trace.images] == [pictures[1].width]  # the examples are not the question's
    without = load_system(f"mllm:{tiny_dirs[kind]}", max_new_tokens=NEW_TOKENS)
    shorter = without.run(QUESTION, [pictures[1]])
    assert shorter.trace.steps[0].prompt_tokens < result.trace.steps[0].prompt_tokens


@pytest.mark.slow
def test_llava_without_a_template_uses_llava_turns(tiny_dirs: dict[str, Path], pictures: list[Any],
                                                   examples: list[Example]) -> None:
    system = load_system(f"mllm:{tiny_dirs['llava-no-template']}", max_new_tokens=NEW_TOKENS, examples=examples)
    processor = system._parts()[1]
    assert system._chat_prompt(processor, QUESTION, 1, system._turns()) == LLAVA_SHOTS
    templated = load_system(f"mllm:{tiny_dirs['llava']}", max_new_tokens=NEW_TOKENS, examples=examples)
    assert system.run(QUESTION, [pictures[1]]).answer == templated.run(QUESTION, [pictures[1]]).answer


@pytest.mark.parametrize(("kind", "label"), [("blip2", "BLIP-2"), ("instructblip", "InstructBLIP")])
def test_one_image_models_refuse_examples_in_one_sentence(kind: str, label: str, tiny_dirs: dict[str, Path],
                                                          examples: list[Example]) -> None:
    with pytest.raises(ConfigError) as info:
        load_system(f"mllm:{tiny_dirs[kind]}", examples=examples)
    assert str(info.value) == (
        f"{label} (q-former) takes exactly 1 image per question, so it cannot be shown solved examples; use a model "
        "that takes several images (LLaVA, IDEFICS, OpenAI vision).")
    assert load_system(f"mllm:{tiny_dirs[kind]}").examples is None  # without examples it is made as before


def test_end_to_end_examples_join_the_fingerprint(tiny_dirs: dict[str, Path], examples: list[Example]) -> None:
    plain = system_settings(load_system(f"mllm:{tiny_dirs['llava']}"))
    shown = system_settings(load_system(f"mllm:{tiny_dirs['llava']}", examples=examples))
    one = system_settings(load_system(f"mllm:{tiny_dirs['llava']}", examples=examples[:1]))
    assert "examples" not in plain and {k: v for k, v in shown.items() if k != "examples"} == plain
    assert shown["examples"]["count"] == 2 and one["examples"]["count"] == 1
    assert shown["examples"]["digest"] != one["examples"]["digest"]


def test_openai_vision_sends_examples_as_completed_turns(pictures: list[Any], examples: list[Example]) -> None:
    from servers import Reply, ScriptedOpenAI

    with ScriptedOpenAI([Reply(content="a cup of coffee")]) as server:
        system = load_system(f"openai-vision:test-model@{server.base_url}", examples=examples)
        result = system.run(QUESTION, [pictures[1]])
    assert result.answer == "a cup of coffee"
    (request,) = server.requests
    messages = request.body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[1]["content"] == "cat" and messages[3]["content"] == "the second"

    def parts(message: dict[str, Any]) -> list[str]:
        return [p["text"] if p["type"] == "text" else "<img>" for p in message["content"]]

    assert parts(messages[0]) == ["<img>", "what animal is this?"]
    assert parts(messages[2]) == ["example_2_image_1:", "<img>", "example_2_image_2:", "<img>", "which one is a drink?"]
    assert parts(messages[4]) == ["<img>", QUESTION]
    images = sum(p == "<img>" for m in messages if m["role"] == "user" for p in parts(m))
    assert images == 4
