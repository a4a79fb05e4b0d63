"""A model server's context: every request fits (mmreact.llms._server_context), the user can cap a
reply's length, and a server that does not apply the step grammar is reported where a user sees it.

The stand-in vLLM server (``tests/servers.py``, ``ScriptedOpenAI(context=...)``) refuses, as vLLM
does, any request whose prompt plus ``max_tokens`` passes its context, with vLLM's sentence.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from servers import IMG, Reply, ScriptedOpenAI, count_tokens

from mmreact import Agent, Image, tool
from mmreact.llms import LLMRequest, Message
from mmreact.errors import ConfigError, LLMError, LLMWarning
from mmreact.llms import load_llm
from mmreact.llms.openai import OpenAILLM
from mmreact.llms._server_context import Room, overflow, prompt_chars

ROOT = Path(__file__).resolve().parents[1]
LINES = [f"Item {i:03d} organic vegetable soup with bread {i % 9}.{i % 7}5" for i in range(150)]


@tool
def ocr(image: Image) -> str:
    """Read the text in the image."""
    return "\n".join(LINES + ["TOTAL 7.75"])


def _receipt_tool():  # noqa: ANN202
    return ocr


STEPS = [Reply(content="Thought: I read it.\nAction: ocr(image_1)"),
         Reply(content="Thought: The total line says 7.75.\nFinal Answer: 7.75")]


def _fits(srv: ScriptedOpenAI) -> list[int]:
    """prompt + max_tokens of every request the server answered."""
    return [count_tokens(r.body) + r.body["max_tokens"] for r in srv.requests if r not in srv.refused]


def test_a_long_receipt_fits_a_4096_token_context() -> None:
    """The step after a long observation: ~1,300 prompt tokens plus the ~3,000 the FULL language's
    longest reply needs pass a 4,096-token context. vLLM's model list names the context, and the
    request asks for what fits (it used to be refused, then sent again unchanged without the
    grammar, and the run died)."""
    with ScriptedOpenAI(list(STEPS), owned_by="vllm", context=4096) as srv:
        llm = OpenAILLM("test-model", base_url=srv.base_url, max_retries=0)
        result = Agent(llm, tools=[_receipt_tool()]).run("What is the total?", IMG)
    assert result.answer == "7.75" and all(s.warning is None for s in result.trace.steps)
    assert srv.refused == [] and len(srv.requests) == 2 and srv.gets == ["/v1/models"]
    first, second = (r.body for r in srv.requests)
    assert first["max_tokens"] > second["max_tokens"]
    assert count_tokens(second) > 1000 and count_tokens(second) + 3032 > 4096  # it would not have fitted
    assert second["max_tokens"] < 3032 and all(n <= 4096 for n in _fits(srv))
    assert "structured_outputs" in second  # still constrained


def test_a_refusal_that_names_the_sizes_is_sent_again_to_fit() -> None:
    """A server whose model list does not name its context: the refusal does, and the request is sent
    again once, with the grammar, asking exactly the room left."""
    with ScriptedOpenAI(list(STEPS), owned_by="vllm", context=4096, report_context=False) as srv:
        llm = OpenAILLM("test-model", base_url=srv.base_url, max_retries=0)
        result = Agent(llm, tools=[_receipt_tool()]).run("What is the total?", IMG)
    assert result.answer == "7.75" and all(s.warning is None for s in result.trace.steps)
    assert len(srv.refused) == 1 and len(srv.requests) == 3
    refused, again = srv.requests[1].body, srv.requests[2].body
    assert srv.refused[0].body is refused and "structured_outputs" in again
    assert again["max_tokens"] == 4096 - count_tokens(again) and again["messages"] == refused["messages"]


def test_a_conversation_that_fills_the_context_is_one_sentence() -> None:
    """Nothing can fit: one sentence, and no retry without the grammar (it would carry the same prompt)."""
    with ScriptedOpenAI(list(STEPS), owned_by="vllm", context=600, report_context=False) as srv:
        llm = OpenAILLM("test-model", base_url=srv.base_url, max_retries=0)
        with pytest.raises(LLMError) as info:
            Agent(llm, tools=[_receipt_tool()]).run("What is the total?", IMG)
    text = str(info.value)
    assert "\n" not in text and text.endswith(".") and "600-token context" in text and "no longer fits" in text
    assert info.value.trace is not None and len(info.value.trace.steps) == 1  # the first step ran
    # step 1 was refused once and fitted; step 2's prompt alone passes the context
    assert [r in srv.refused for r in srv.requests] == [True, False, True]
    assert all("structured_outputs" in r.body for r in srv.requests)


def test_refusals_of_each_server_are_read() -> None:
    vllm_new = ("'max_tokens' or 'max_completion_tokens' is too large: 3032. This model's maximum context length is "
                "4096 tokens and your request has 1500 input tokens (3032 > 4096 - 1500).")
    vllm_old = ("This model's maximum context length is 4096 tokens. However, you requested 4532 tokens "
                "(1500 in the messages, 3032 in the completion). Please reduce the length of the messages or completion.")
    sglang = ("Requested token count exceeds the model's maximum context length of 4096 tokens. You requested a total "
              "of 4532 tokens: 1500 tokens from the input messages and 3032 tokens for the completion.")
    for text in (vllm_new, vllm_old, sglang):
        assert overflow({"message": text}, text) == overflow(None, text)
        found = overflow(None, text)
        assert found is not None and (found.context, found.prompt) == (4096, 1500), text
    llamacpp = {"code": 400, "message": "the request exceeds the available context size, try increasing it",
                "type": "exceed_context_size_error", "n_prompt_tokens": 5000, "n_ctx": 4096}
    found = overflow(llamacpp, llamacpp["message"])
    assert found is not None and (found.context, found.prompt) == (4096, 5000)
    assert overflow({"message": "grammar: unknown rule"}, "grammar: unknown rule") is None
    room = Room()
    params = {"messages": [{"role": "user", "content": "x" * 4000}], "max_tokens": 3032}
    room.fit(params)
    assert params["max_tokens"] == 3032  # the context is not known: nothing to fit
    room.context = 4096
    room.fit(params)
    assert params["max_tokens"] == 4096 - room.estimate(prompt_chars(params)) and prompt_chars(params) > 4000
    room.learn(params, 1000)
    params["max_tokens"] = 3032
    room.fit(params)
    assert 4096 - 1100 < params["max_tokens"] < 4096 - 1000  # at the server's own rate, with a margin


def test_max_tokens_in_the_spec_caps_every_request() -> None:
    with ScriptedOpenAI(list(STEPS), owned_by="vllm") as srv:
        llm = load_llm(f"openai:test-model@{srv.base_url}?max_tokens=300")
        assert isinstance(llm, OpenAILLM) and llm.max_tokens == 300
        assert llm.name.endswith("?max_tokens=300") and load_llm(llm.name).max_tokens == 300  # type: ignore[attr-defined]
        Agent(llm, tools=[_receipt_tool()]).run("What is the total?", IMG)
    assert [r.body["max_tokens"] for r in srv.requests] == [300, 300]
    for bad in ("abc", "0", "-5"):
        with pytest.raises(ConfigError) as info:
            load_llm(f"openai:m@http://127.0.0.1:9/v1?max_tokens={bad}")
        assert "max_tokens" in str(info.value) and "\n" not in str(info.value)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmreact", "ask", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=dict(os.environ))


def _image(tmp_path: Path) -> str:
    from PIL import Image as PILImage

    path = tmp_path / "img.png"
    PILImage.fromarray(IMG).save(path)
    return str(path)


def test_the_cli_caps_replies_with_max_tokens(tmp_path: Path) -> None:
    with ScriptedOpenAI([Reply(content="Thought: easy.\nFinal Answer: hi")], owned_by="vllm") as srv:
        proc = _cli(_image(tmp_path), "Say hi", "--llm", f"openai:test-model@{srv.base_url}", "--max-tokens", "64",
                    "--tools", "ocr", "--prefetch", "none")
    assert (proc.returncode, proc.stdout) == (0, "hi\n"), proc.stderr
    assert [r.body["max_tokens"] for r in srv.requests] == [64]
    proc = _cli(_image(tmp_path), "Say hi", "--llm", f"scripted:{tmp_path / 'x.json'}", "--max-tokens", "64")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--max-tokens caps the replies" in proc.stderr
    proc = _cli(_image(tmp_path), "Say hi", "--llm", "openai:m@http://127.0.0.1:9/v1?max_tokens=5", "--max-tokens", "6")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "once" in proc.stderr


def test_a_rejected_grammar_is_shown_once_without_verbose(tmp_path: Path) -> None:
    """``mmreact ask`` prints the warning on stderr once (it was only on a logger nobody listens to)."""
    script = [Reply.fail(400, "Unrecognized request argument supplied: grammar"),
              Reply(content="Thought: measure.\nAction: ocr(image_1)"), Reply(content="Final Answer: hi")]
    with ScriptedOpenAI(script) as srv:
        proc = _cli(_image(tmp_path), "Say hi", "--llm", f"openai:test-model@{srv.base_url}?grammar=llamacpp",
                    "--tools", "ocr", "--prefetch", "none")
    assert proc.returncode == 0 and proc.stdout == "hi\n", proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(lines) == 1 and lines[0].startswith("mmreact: warning: The server at ")
    assert "rejected the step grammar" in lines[0]


def test_python_users_get_the_warning_once() -> None:
    script = [Reply.fail(400, "Unrecognized request argument supplied: grammar"),
              Reply(content="Thought: measure.\nAction: ocr(image_1)"), Reply(content="Final Answer: 31.5")]
    with ScriptedOpenAI(script) as srv, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        llm = OpenAILLM("test-model", base_url=srv.base_url, grammar="llamacpp", max_retries=0)
        request = LLMRequest(messages=[Message("user", "q")], tools=[_receipt_tool()], handles=("image_1",),
                             kind="react")
        llm.complete(request)
        llm.complete(request)
    ours = [w for w in caught if issubclass(w.category, LLMWarning)]
    assert len(ours) == 1 and "rejected the step grammar" in str(ours[0].message)
    assert json.dumps(str(ours[0].message)).count("\\n") == 0
