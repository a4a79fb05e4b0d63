"""End-to-end multimodal systems: tiny random models of each bridge design (projection: LLaVA,
LLaVA-NeXT; Q-Former: BLIP-2, InstructBLIP; gated cross-attention: IDEFICS; plus VipLLaVA through the
generic AutoModelForImageTextToText path), each built with its real processor and run through
``load_system("mllm:<dir>")`` with real ``generate``; the OpenAI vision backend against a loopback
server; the hybrid ``ask_vlm`` tool inside an agent run.

Each model's answer is checked against a reference computed here directly with transformers, from
the prompt format the family documents, so a wrong prompt, wrong image wiring, wrong slicing of the
prompt off the output or wrong decoding fails the test.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mmreact import Agent, ConfigError, ImageError, LLMError, ScriptedLLM, Trace, WeightsMissingError
from mmreact.mllm import System, load_system
from mmreact.mllm.base import RunResult

QUESTION = "what is this?"
NEW_TOKENS = 5


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pictures() -> list[Any]:
    """Two real photographs (a cat, a cup of coffee): textured images, so the answers depend on them."""
    from fixtures import skimage_path
    from PIL import Image as PILImage

    return [PILImage.open(skimage_path(name)).convert("RGB") for name in ("chelsea.png", "coffee.png")]


def _reference(kind: str, path: Path, pictures: list[Any]) -> tuple[str, int]:
    """The answer and prompt length, straight from transformers with the family's documented prompt."""
    import torch
    import transformers

    classes = {"llava": "LlavaForConditionalGeneration", "llava_next": "LlavaNextForConditionalGeneration",
               "blip2": "Blip2ForConditionalGeneration",
               "instructblip": "InstructBlipForConditionalGeneration", "idefics": "IdeficsForVisionText2Text",
               "vipllava": "VipLlavaForConditionalGeneration"}
    model = getattr(transformers, classes[kind]).from_pretrained(path).eval()
    processor = transformers.AutoProcessor.from_pretrained(path)
    if kind in ("llava", "llava_next", "vipllava"):
        prompt = "USER: " + "<image>\n" * len(pictures) + f"{QUESTION} ASSISTANT:"
        inputs = processor(images=pictures, text=prompt, return_tensors="pt")
    elif kind == "blip2":
        inputs = processor(images=pictures[0], text=f"Question: {QUESTION} Answer:", return_tensors="pt")
    elif kind == "instructblip":
        inputs = processor(images=pictures[0], text=QUESTION, return_tensors="pt")
    else:
        prompts = ["User:", *pictures, QUESTION, "<end_of_utterance>", "\nAssistant:"]
        inputs = processor(text=prompts, add_end_of_utterance_token=False, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False,
                             suppress_tokens=model.generation_config.suppress_tokens)
    n = inputs["input_ids"].shape[1]
    assert out.shape[1] == n + NEW_TOKENS and torch.equal(out[0, :n], inputs["input_ids"][0])
    return processor.tokenizer.decode(out[0, n:], skip_special_tokens=True).strip(), n


# -- one model per bridge -----------------------------------------------------------------------
BRIDGE_CASES = [
    ("llava", "projection", 2),
    ("llava_next", "projection", 2),
    ("blip2", "q-former", 1),
    ("instructblip", "q-former", 1),
    ("idefics", "gated cross-attention", 2),
    ("vipllava", "projection", 2),  # not a named family: the AutoModelForImageTextToText path
]


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "bridge", "n_images"), BRIDGE_CASES, ids=[c[0] for c in BRIDGE_CASES])
def test_bridge_end_to_end(kind: str, bridge: str, n_images: int, tiny_dirs: dict[str, Path],
                           pictures: list[Any]) -> None:
    from mmreact.mllm.hf import HFMultimodal

    path = tiny_dirs[kind]
    system = load_system(f"mllm:{path}", max_new_tokens=NEW_TOKENS)
    assert isinstance(system, HFMultimodal) and isinstance(system, System)
    assert system.bridge == bridge
    assert (system.family is None) == (kind == "vipllava")
    result = system.run(QUESTION, pictures[:n_images])
    assert isinstance(result, RunResult)
    expected, prompt_len = _reference(kind, path, pictures[:n_images])
    assert isinstance(result.answer, str) and result.answer  # the tiny models speak only whole words
    assert result.answer == expected
    trace = result.trace
    assert trace.llm == f"mllm:{path.name} ({bridge})"
    assert trace.status == "answered" and trace.answer == result.answer and result.ok
    assert [img.width for img in trace.images] == [p.width for p in pictures[:n_images]]
    (step,) = trace.steps
    assert step.final_answer == result.answer and step.llm_text.strip() == result.answer
    assert step.prompt_tokens == prompt_len and step.completion_tokens == NEW_TOKENS
    assert step.llm_seconds > 0 and trace.seconds >= step.llm_seconds
    assert trace.tokens == prompt_len + NEW_TOKENS
    assert Trace.from_json(trace.to_json()) == trace


@pytest.mark.slow
def test_llava_without_chat_template_uses_llava_format(tiny_dirs: dict[str, Path], pictures: list[Any]) -> None:
    """Same seed, same weights: the fallback prompt must give exactly the chat template's answer."""
    with_template = load_system(f"mllm:{tiny_dirs['llava']}", max_new_tokens=NEW_TOKENS).run(QUESTION, pictures)
    plain = load_system(f"mllm:{tiny_dirs['llava-no-template']}", max_new_tokens=NEW_TOKENS).run(QUESTION, pictures)
    assert plain.answer == with_template.answer
    assert plain.trace.steps[0].prompt_tokens == with_template.trace.steps[0].prompt_tokens
    system = load_system(f"mllm:{tiny_dirs['llava-no-template']}")
    processor = system._parts()[1]
    assert system._chat_prompt(processor, QUESTION, 2) == f"USER: <image>\n<image>\n{QUESTION} ASSISTANT:"


@pytest.mark.slow
def test_model_loads_once_and_is_shared(tiny_dirs: dict[str, Path], pictures: list[Any]) -> None:
    first = load_system(f"mllm:{tiny_dirs['llava']}")
    second = load_system(f"mllm:{tiny_dirs['llava']}", max_new_tokens=3)
    first.load()
    assert first._parts()[0] is second._parts()[0]
    result = second.run(QUESTION, pictures[0])
    assert result.trace.steps[0].completion_tokens == 3


@pytest.mark.slow
def test_qformer_takes_exactly_one_image(tiny_dirs: dict[str, Path], pictures: list[Any]) -> None:
    system = load_system(f"mllm:{tiny_dirs['blip2']}")
    for images in (pictures, []):
        with pytest.raises(ConfigError, match=r"BLIP-2 \(q-former\) takes exactly 1 image per question, got"):
            system.run(QUESTION, images)
    with pytest.raises(ConfigError, match="question is empty"):
        system.run("  ", pictures[0])
    with pytest.raises(ImageError, match="No such image file"):
        system.run(QUESTION, "/no/such/picture.png")


def test_missing_weights_are_one_sentence(tmp_path: Path) -> None:
    cases = {
        "mllm:someone/not-cached-vlm": r"'someone/not-cached-vlm' are not on this machine: run `hf "
                                       r"download someone/not-cached-vlm`",
        f"mllm:{tmp_path / 'absent'}": "There is no model directory at",
        f"mllm:{tmp_path}": "has no config.json",
    }
    for spec, message in cases.items():
        with pytest.raises(WeightsMissingError, match=message) as info:
            load_system(spec)
        assert "\n" not in str(info.value)


@pytest.mark.slow
def test_weights_missing_next_to_config(tmp_path: Path, tiny_dirs: dict[str, Path], pictures: list[Any]) -> None:
    (tmp_path / "config.json").write_text((tiny_dirs["llava"] / "config.json").read_text())
    system = load_system(f"mllm:{tmp_path}")
    assert system.bridge == "projection"  # known from config.json alone, nothing loaded yet
    with pytest.raises(WeightsMissingError, match="has a config.json but its weights are missing") as info:
        system.run(QUESTION, pictures[0])
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_unknown_model_type_is_one_sentence(tmp_path: Path, pictures: list[Any]) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-vlm"}))
    system = load_system(f"mllm:{tmp_path}")
    assert system.bridge == "other" and system.name.endswith("(other)")
    with pytest.raises(ConfigError, match="is a 'no-such-vlm' model, which transformers cannot load"):
        system.run(QUESTION, pictures[0])


def test_bad_options_and_specs(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(ConfigError, match="Unknown dtype 'int8'"):
        load_system(f"mllm:{tmp_path}", dtype="int8")
    with pytest.raises(ConfigError, match="max_new_tokens must be a positive integer"):
        load_system(f"mllm:{tmp_path}", max_new_tokens=0)
    with pytest.raises(ConfigError, match=r"Unknown system spec 'llava:x'; use agent, agent:LLM_SPEC, mllm:"):
        load_system("llava:x")
    for spec in ("mllm:", "openai-vision:  "):
        with pytest.raises(ConfigError, match="needs a value after"):
            load_system(spec)
    with pytest.raises(ConfigError, match="Cannot use a int as a system"):
        load_system(3)  # type: ignore[arg-type]


def test_agent_is_a_system(tmp_path: Path, tiny_png: Path) -> None:
    script = tmp_path / "replies.json"
    script.write_text(json.dumps(["Final Answer: red"]))
    agent = load_system(f"agent:scripted:{script}", tools=[])
    assert isinstance(agent, Agent) and isinstance(agent, System)
    assert agent.llm.name == "scripted:replies.json"
    result = agent.run("what colour?", [tiny_png])
    assert isinstance(result, RunResult) and result.answer == "red"
    assert load_system(agent) is agent


def test_import_stays_light() -> None:
    code = ("import sys, mmreact.mllm, mmreact.mllm.hf, mmreact.mllm.hybrid, mmreact.mllm.openai_vision; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'openai'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- OpenAI vision --------------------------------------------------------------------------------
def _png_size(url: str) -> tuple[int, int]:
    from PIL import Image as PILImage

    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    with PILImage.open(io.BytesIO(base64.b64decode(url[len(prefix):], validate=True))) as img:
        assert img.format == "PNG"
        return img.size


def test_openai_vision_sends_images_and_reads_the_answer(pictures: list[Any]) -> None:
    from servers import Reply, ScriptedOpenAI

    with ScriptedOpenAI([Reply(content=" A red square. ", usage=(120, 4))]) as server:
        system = load_system(f"openai-vision:test-model@{server.base_url}")
        result = system.run("What is in these images?", pictures)
    assert result.answer == "A red square."
    trace = result.trace
    assert trace.llm == f"openai-vision:test-model@{server.base_url}"
    (step,) = trace.steps
    assert (step.prompt_tokens, step.completion_tokens) == (120, 4) and step.llm_seconds > 0
    (request,) = server.requests
    assert request.path.endswith("/chat/completions")
    body = request.body
    assert body["model"] == "test-model" and body["temperature"] == 0 and body["max_tokens"] == 300
    (message,) = body["messages"]
    assert message["role"] == "user"
    kinds = [part["type"] for part in message["content"]]
    assert kinds == ["text", "image_url", "text", "image_url", "text"]
    texts = [part["text"] for part in message["content"] if part["type"] == "text"]
    assert texts == ["image_1:", "image_2:", "What is in these images?"]
    sizes = [_png_size(part["image_url"]["url"]) for part in message["content"] if part["type"] == "image_url"]
    assert sizes == [(451, 300), (600, 400)]


def test_openai_vision_retries_with_max_completion_tokens(pictures: list[Any]) -> None:
    from servers import Reply, ScriptedOpenAI

    refusal = Reply.fail(400, "Unsupported parameter: 'max_tokens' is not supported with this model.",
                         code="unsupported_parameter", param="max_tokens")
    with ScriptedOpenAI([refusal, Reply(content="ok")]) as server:
        system = load_system(f"openai-vision:test-model@{server.base_url}", max_tokens=50, detail="low")
        assert system.run("hi?", pictures[0]).answer == "ok"
    first, second = (r.body for r in server.requests)
    assert first["max_tokens"] == 50 and "max_completion_tokens" not in first
    assert second["max_completion_tokens"] == 50 and "max_tokens" not in second
    assert second["messages"][0]["content"][0]["image_url"]["detail"] == "low"


def test_openai_vision_errors_are_one_sentence(pictures: list[Any]) -> None:
    from servers import ScriptedOpenAI, free_port

    from mmreact.mllm.openai_vision import OpenAIVision

    down = OpenAIVision("test-model", base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0)
    with pytest.raises(LLMError, match=r"^Cannot reach the server at http://127\.0\.0\.1:\d+/v1") as info:
        down.run(QUESTION, pictures[0])
    assert "\n" not in str(info.value) and info.value.trace is not None
    with ScriptedOpenAI([]) as server, pytest.raises(LLMError, match="Model 'other-model' was not found"):
        OpenAIVision("other-model", base_url=server.base_url, max_retries=0).run(QUESTION, pictures[0])
    with pytest.raises(ConfigError, match=r"No OpenAI API key: .*openai-vision:MODEL@http"):
        load_system("openai-vision:gpt-4o-mini")


def test_large_images_are_scaled_down() -> None:
    from PIL import Image as PILImage

    from mmreact import load_image
    from mmreact.mllm.openai_vision import data_url

    wide = load_image(PILImage.new("RGB", (3000, 100), (0, 0, 0)))
    assert _png_size(data_url(wide)) == (2048, 68)
    assert _png_size(data_url(wide, max_side=300)) == (300, 10)


# -- hybrid: the planner consults the VLM ---------------------------------------------------------
def _last_result(request: Any) -> str:
    """The text of the last tool result the engine sent to the model."""
    return request.messages[-1].results[-1][1]


@pytest.mark.slow
def test_agent_consults_the_vlm_tool(tiny_dirs: dict[str, Path], pictures: list[Any]) -> None:
    from mmreact.mllm import vlm_tool

    vlm = load_system(f"mllm:{tiny_dirs['idefics']}", max_new_tokens=NEW_TOKENS)
    tool = vlm_tool(vlm)
    assert tool.name == "ask_vlm" and tool.image_params == ("image",)
    assert tool.usage() == "ask_vlm(image: image, question: str)"
    llm = ScriptedLLM([
        "Thought: ask the VLM.\nAction: ask_vlm(image_1, question='what is this?')",
        lambda request: "Final Answer: " + _last_result(request),
    ])
    result = Agent(llm=llm, tools=[tool]).run("What is in the picture?", [pictures[1]])
    direct = vlm.run(QUESTION, pictures[1]).answer
    assert direct
    (call,) = result.trace.calls
    assert call.tool == "ask_vlm" and call.call == "ask_vlm(image_1, 'what is this?')" and not call.error
    assert call.text == direct
    assert call.artifact["answer"] == direct and call.artifact["model"] == vlm.name
    assert call.artifact["tokens"] > NEW_TOKENS
    assert _last_result(llm.requests[1]) == direct and direct in llm.requests[1].messages[-1].content
    assert result.answer == direct


def test_vlm_tool_failure_is_an_observation(pictures: list[Any]) -> None:
    from servers import free_port

    from mmreact.mllm import vlm_tool
    from mmreact.mllm.openai_vision import OpenAIVision

    down = OpenAIVision("test-model", base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0)
    llm = ScriptedLLM(["Action: look(image_1, question='what?')", "Final Answer: unknown"])
    result = Agent(llm=llm, tools=[vlm_tool(down, name="look", cacheable=False)]).run("What?", [pictures[0]])
    (call,) = result.trace.calls
    assert call.error and call.text.startswith("Error: openai-vision:test-model@http://127.0.0.1:")
    assert "could not answer: Cannot reach the server" in call.text
    assert result.answer == "unknown"
