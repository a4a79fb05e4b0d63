"""OpenAI chat completions: api.openai.com or any OpenAI-compatible server (llama.cpp, vLLM, SGLang, Ollama...).

Spec strings: ``openai:MODEL`` (key from ``OPENAI_API_KEY``, URL from ``OPENAI_BASE_URL`` or
api.openai.com) and ``openai:MODEL@BASE_URL``, e.g. ``openai:smollm2@http://127.0.0.1:8000/v1``.
Settings follow as a query: ``openai:smollm2@http://127.0.0.1:8000/v1?grammar=llamacpp&options=embedded``
(keys: ``grammar``, ``options``, ``mode``, ``seed``, ``temperature``, ``max_tokens``; see
:func:`mmreact.llms._server_grammar.spec_settings`).

Decisions:

* **Two modes.** ``"text"`` sends the transcript as plain chat messages and lets the model write
  ``Action:`` / ``Final Answer:`` lines (stopped at ``Observation:``). ``"tools"`` uses native
  function calling: tools go out as JSON schemas, ``tool_calls`` come back as
  :class:`~mmreact.protocol.Call` objects, and results go back as ``role: tool`` messages. A tools-mode
  reply without tool calls is the final answer. ``"auto"`` (default) picks ``"tools"`` on
  api.openai.com and ``"text"`` on other servers, many of which accept ``tools`` but ignore them.
* **The step grammar over the wire.** In text mode, a server that can constrain decoding gets each
  agent step's language (:func:`~mmreact.llms.grammar.step_grammar`, what ``gguf:`` decodes under)
  in the field it reads (``grammar=llamacpp|vllm|sglang`` and ``-regex`` forms; ``auto``, the
  default, asks ``GET /v1/models`` once; see :mod:`mmreact.llms.server_grammar`), and the step runs
  through :func:`~mmreact.llms.grammar.run_step` as in ``gguf:`` (forced steps, decision first or
  thought first; ``decided`` / ``choices`` in the trace). ``kind="text"`` requests with a
  ``text_format`` are constrained the same way. ``ollama`` and ``none`` send nothing (Ollama's
  JSON-schema ``format`` cannot express the language: each step then carries a warning).
* **No prefill over the wire.** Chat completions have no portable way to write ``Thought:`` /
  ``Final Answer:`` into the assistant message (llama-cpp-python's server has none), so the server
  decodes them under the grammar (``run_step(..., prefill=False)``). Its prompt is its own chat
  template, for a GGUF file the Jinja template ``gguf:`` renders, so ``GGUFLLM(path, prefill=False)``
  and the same file behind llama-cpp-python's server give the same steps for the same seed
  (tested). Decoding is not cut early: where ``run_step`` would stop (a settled call, a thought's
  newline) the server's grammar ends the reply anyway.
* **Step settings**: ``options=full`` (default, as ``gguf:``), ``options=embedded`` (the embedded
  135M default's) or any :class:`~mmreact.llms.grammar.StepOptions`; ``writes_thoughts`` follows it.
  As in-process, a constrained reply's token budget grows to fit the language's longest reply
  (``full``: ~3,000; the language sent has no length bounds, the budget is the bound: see
  :func:`~mmreact.llms._server_grammar.served`), fitted to the server's context
  (:mod:`mmreact.llms.server_context`); ``max_tokens`` (``?max_tokens=N``, ``--max-tokens``) caps it.
* **A server that rejects the grammar** (HTTP 400/422 to a request carrying it) gets one retry of
  that step without it; when the retry succeeds the server is remembered as unconstrained and its
  steps carry ``meta["warning"]``, as does a reply a server returned outside the language (one that
  ignores the field). Each warning is also issued once per backend as an
  :class:`~mmreact.errors.LLMWarning` (shown by Python's default filters; ``mmreact ask`` prints it
  on stderr) and logged on the ``mmreact`` logger.
* **Keys.** ``api_key`` > ``OPENAI_API_KEY``. Without a key, api.openai.com is a :class:`ConfigError`
  at construction; any other base URL gets a placeholder key (local servers ignore it).
* **Retries.** The SDK's own: exponential backoff (0.5 s doubling, capped at 8 s, with jitter; a
  server's ``Retry-After`` is honoured up to 2 min) on connection errors, 408, 409, 429 and 5xx.
  ``max_retries`` is clamped to 0..10; connecting gives up after 5 s per try.
* **Quirks.** When a server rejects ``stop``, ``temperature`` or ``stream_options`` as unsupported
  they are dropped, and ``max_tokens`` becomes ``max_completion_tokens``; remembered per instance.
* Every failure the user must act on is one sentence in :class:`~mmreact.errors.LLMError`.
* **Broken streams.** A stream whose connection drops, or whose body ends before any chunk carries a
  ``finish_reason``, is an :class:`LLMError` (a cut reply is never taken as complete). It is not
  retried: its start has already gone to ``on_text``.

The helpers at the bottom (tool schemas, argument parsing, final-answer wrapping) use OpenAI's
function-calling format, which other tool-calling adapters (LangChain) share.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ConfigError, LLMError, LLMWarning, one_line
from ..protocol import Call, ParseError, new_call_id, parse
from ._server_context import Room, budget, context_of, overflow
from ._server_grammar import (
    CONSTRAINED,
    OLLAMA_NOTE,
    check_kind,
    detect,
    language_fields,
    options_name,
    sampling_fields,
    served,
    spec_settings,
    step_options,
)
from .base import LLM, Completion, LLMRequest, Message, chat_messages, on_this_machine
from .grammar import (
    EMBEDDED,
    FULL,
    Generated,
    StepGrammar,
    StepOptions,
    run_step,
    step_grammar,
)

if TYPE_CHECKING:
    from ..tools import Tool
    from .formats import TextFormat

Mode = Literal["auto", "text", "tools"]
OPENAI_URL = "https://api.openai.com/v1"
PLACEHOLDER_KEY = "sk-no-key-needed"
#: kwargs key that carries tool-call arguments which were not a JSON object; it is not a valid
#: parameter name, so validation fails and the model gets an error observation.
INVALID_ARGUMENTS = "invalid JSON arguments"
TOOLS_NOTE = (
    "Call tools through the function-calling interface (not as Action lines). "
    "When you know the answer, reply with the answer as plain text."
)
_DROPPABLE = ("stop", "temperature", "stream_options", "max_tokens")
log = logging.getLogger("mmreact")


class _Rejected(Exception):
    """The server answered a request that carried the step language with HTTP 400/422."""

    def __init__(self, error: LLMError, params: dict[str, Any]) -> None:
        super().__init__(str(error))
        self.error = error
        self.params = params


class OpenAILLM(LLM):
    """Chat completions through the ``openai`` SDK (imported on first use).

    Args:
        model: model name as the server knows it.
        base_url: server root ending in ``/v1``; ``None`` means ``OPENAI_BASE_URL`` or api.openai.com.
        api_key: ``None`` means ``OPENAI_API_KEY`` (or a placeholder for non-OpenAI servers).
        timeout: seconds one HTTP request may take.
        max_retries: retries on connection errors, 408/409/429 and 5xx (exponential backoff).
        mode: ``"text"``, ``"tools"`` or ``"auto"`` (see the module docstring).
        temperature: sampling temperature (0 for repeatable runs); ``None`` leaves the server's default.
        max_tokens: a cap on each reply's length, below the engine's own limit (cost control; a cap
            below a step language's longest reply can cut a constrained reply short).
        grammar: how the server takes the step language: ``"auto"`` (ask the server), ``"llamacpp"``,
            ``"vllm"``, ``"vllm-regex"``, ``"sglang"``, ``"sglang-regex"``, ``"ollama"`` or ``"none"``
            (see :mod:`mmreact.llms.server_grammar`).
        options: the step language's settings: ``"full"`` (default), ``"embedded"`` or a
            :class:`~mmreact.llms.grammar.StepOptions`.
        seed: sent as ``seed`` with every request (servers that sample with a seed repeat themselves).
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        mode: Mode = "auto",
        temperature: float | None = 0.0,
        max_tokens: int | None = None,
        grammar: str = "auto",
        options: str | StepOptions | None = None,
        seed: int | None = None,
    ) -> None:
        model = (model or "").strip()
        if not model:
            raise ConfigError("The OpenAI backend needs a model name, e.g. openai:gpt-4o-mini.")
        if mode not in ("auto", "text", "tools"):
            raise ConfigError(f"OpenAI mode must be 'auto', 'text' or 'tools', got {mode!r}.")
        if not timeout or timeout <= 0:
            raise ConfigError(f"The OpenAI timeout must be a positive number of seconds, got {timeout!r}.")
        url = (base_url or os.environ.get("OPENAI_BASE_URL") or "").strip().rstrip("/")
        if url and not url.startswith(("http://", "https://")):
            raise ConfigError(f"The OpenAI base URL '{url}' must start with http:// or https://.")
        official = not url or "api.openai.com" in url
        key = api_key or os.environ.get("OPENAI_API_KEY") or ""
        if not key:
            if official:
                raise ConfigError(
                    "No OpenAI API key: set OPENAI_API_KEY, or give a base URL "
                    "(openai:MODEL@http://host:port/v1) for a local OpenAI-compatible server."
                )
            key = PLACEHOLDER_KEY
        kind = check_kind(grammar)
        if kind in CONSTRAINED and mode == "tools":
            raise ConfigError(f"grammar={kind} constrains text-ReAct replies, so it cannot be used with mode='tools'.")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ConfigError(f"The seed must be an integer, got {seed!r}.")
        self.model = model
        self.base_url = url or OPENAI_URL
        self.timeout = float(timeout)
        self.max_retries = max(0, min(int(max_retries), 10))
        tools_default = official and kind in ("auto", "none")
        self.mode: Literal["text", "tools"] = ("tools" if tools_default else "text") if mode == "auto" else mode
        self.temperature = temperature
        if max_tokens is not None and max_tokens < 1:
            raise ConfigError(f"max_tokens must be at least 1, got {max_tokens}.")
        self.max_tokens = max_tokens
        self.grammar = kind
        self.options = step_options(options)
        self.seed = seed
        self.name = (f"openai:{model}" if official else f"openai:{model}@{self.base_url}") + self._spec_query()
        self._key = key
        self._client: Any = None
        self._lock = threading.Lock()
        self._quirks: set[str] = set()
        #: the server kind once known (``grammar``, or what ``auto`` detected)
        self._kind: str | None = "none" if kind == "auto" and official else None if kind == "auto" else kind
        self._kind_lock = threading.Lock()
        #: why the server is no longer sent the step language (it rejected it), else ``None``
        self._rejected: str | None = None
        self._logged: set[str] = set()
        #: the server's context and the rate it counts prompt tokens at (:mod:`.server_context`)
        self._room = Room()

    def _spec_query(self) -> str:
        """The settings that differ from the defaults, as a spec query (part of :attr:`name`)."""
        parts = [f"grammar={self.grammar}"] if self.grammar != "auto" else []
        if self.max_tokens is not None:
            parts.append(f"max_tokens={self.max_tokens}")
        if self.options != FULL:
            parts.append(f"options={options_name(self.options)}")
        if self.seed is not None:
            parts.append(f"seed={self.seed}")
        return "?" + "&".join(parts) if parts else ""

    @classmethod
    def from_spec(cls, spec: str) -> OpenAILLM:
        """``MODEL`` or ``MODEL@BASE_URL`` (the URL starts with http:// or https://), optionally
        followed by ``?key=value&...`` settings (:func:`~mmreact.llms._server_grammar.spec_settings`)."""
        spec, _, query = spec.partition("?")
        kwargs = spec_settings(query) if query else {}
        for marker in ("@http://", "@https://"):
            model, sep, rest = spec.partition(marker)
            if sep:
                return cls(model, base_url=marker[1:] + rest, **kwargs)
        return cls(spec, **kwargs)

    @property
    def writes_thoughts(self) -> bool:
        return self.options.thought

    @property
    def grounds_answers(self) -> bool:
        """Whether grounded answers can be sent: a server that may take a grammar (``grammar=auto``
        on a server that is not OpenAI's, or a constrained kind), text mode, not rejected yet. Each
        reply says in ``meta["grounded"]`` whether the server really decoded under it."""
        return self.mode == "text" and self._rejected is None and (
            self.grammar in CONSTRAINED or (self.grammar == "auto" and self._kind != "none"))

    @property
    def grounds_by_default(self) -> bool:
        return self.grounds_answers and self.options == EMBEDDED

    @property
    def runs_locally(self) -> bool:
        """A server on a loopback address decodes on this machine's cores (see :mod:`mmreact.prefetch`)."""
        return on_this_machine(self.base_url)

    # -- client ---------------------------------------------------------------------------
    def client(self) -> Any:
        """The SDK client, created on first use (importing ``openai`` takes ~0.5 s)."""
        with self._lock:
            if self._client is None:
                try:
                    import openai
                except ImportError:
                    raise ConfigError("The OpenAI backend needs the openai package: pip install openai.") from None
                self._client = openai.OpenAI(
                    api_key=self._key, base_url=self.base_url, max_retries=self.max_retries,
                    timeout=openai.Timeout(self.timeout, connect=min(5.0, self.timeout)),
                )
            return self._client

    def server_kind(self) -> str:
        """How this server takes the step language: :attr:`grammar`, or for ``"auto"`` what
        ``GET /v1/models`` says (asked once; see :func:`mmreact.llms._server_grammar.detect`)."""
        with self._kind_lock:
            if self._kind is None:
                self._kind = self._detect()
            return self._kind

    def _detect(self) -> str:
        import openai

        try:
            page = self.client().models.list()
            owned = [str(getattr(m, "owned_by", "") or "") for m in page.data]
            self._room.context, self._room.asked = context_of(page.data, self.model), True
        except (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError) as exc:
            raise self._error(exc) from None  # the same sentence the chat request would give
        except Exception:  # noqa: BLE001 - no model list (404), or not the OpenAI shape: not a known server
            return "none"
        return detect(owned)

    def _ask_context(self) -> None:
        """Read the model list once for the context where the kind was named (``auto`` read it)."""
        with self._kind_lock:
            if not self._room.asked:
                try:
                    self._room.context = context_of(self.client().models.list().data, self.model)
                except Exception:  # noqa: BLE001 - no list: a refusal may still name the context
                    pass
                self._room.asked = True

    # -- one step -------------------------------------------------------------------------
    def complete(self, request: LLMRequest) -> Completion:
        self.client()  # a missing openai package is a ConfigError sentence
        tools = self.mode == "tools" and request.kind == "react" and bool(request.tools)
        kind = "none" if self.mode == "tools" else self.server_kind()
        language = request.kind == "react" or request.text_format is not None
        if kind in CONSTRAINED and language and self._rejected is None:
            try:
                return self._constrained(request, kind)
            except _Rejected as rejected:
                # One retry of the same request without the server-specific fields (and with the stop
                # strings a free reply needs); when that fails too, its error is the one to report.
                done = self._plain(request, kind, tools=False, base=rejected.params)
                self._rejected = str(rejected.error).rstrip(".")
                return self._warn(done, f"The server at {self.base_url} rejected the step grammar ({kind}: "
                                        f"{self._rejected}), so its replies are not constrained and may not parse.")
        done = self._plain(request, kind, tools=tools)
        if kind == "ollama" and language and not tools:
            return self._warn(done, OLLAMA_NOTE)
        if self._rejected is not None and kind in CONSTRAINED and language:
            return self._warn(done, f"The server at {self.base_url} rejected the step grammar earlier ({kind}), "
                                    "so its replies are not constrained and may not parse.", told=True)
        return done

    def _warn(self, done: Completion, warning: str, *, told: bool = False) -> Completion:
        """``warning`` in the step's meta; issued once per backend, unless the user was ``told`` already."""
        done.meta["warning"] = warning
        if not told and warning not in self._logged:  # on the log, and where a user sees it
            self._logged.add(warning)
            log.warning("%s: %s", self.name, warning)
            warnings.warn(warning, LLMWarning, stacklevel=2)
        return done

    def _params(self, request: LLMRequest, limit: int, kind: str) -> dict[str, Any]:
        if self.max_tokens:
            limit = min(limit, self.max_tokens)
        params: dict[str, Any] = {"model": self.model, "max_tokens": limit}
        if self.temperature is not None:
            params["temperature"] = self.temperature
        if self.seed is not None:
            params["seed"] = self.seed
        extra = sampling_fields(kind) if self._rejected is None else {}
        if extra:
            params["extra_body"] = dict(extra)
        return params

    def _plain(self, request: LLMRequest, kind: str, *, tools: bool, base: dict[str, Any] | None = None) -> Completion:
        """One unconstrained chat completion (text ReAct, native tools, or a plain text reply);
        ``base``: the params of a rejected constrained request, sent again without ``extra_body``."""
        params = self._params(request, request.max_tokens, kind)
        if base is not None:  # the rejected request without its language, and a free reply's budget
            params = {**{k: v for k, v in base.items() if k not in (
                "extra_body", "stream", "stream_options", "max_tokens", "max_completion_tokens")},
                      "max_tokens": params["max_tokens"]}
        if tools:
            params["messages"] = openai_messages(request.messages, request.tools, note=TOOLS_NOTE)
            params["tools"] = tool_specs(request.tools)
        else:
            params["messages"] = chat_messages(request.messages)
            if request.stop:
                params["stop"] = list(request.stop)[:4]  # OpenAI takes at most four
        t0 = time.perf_counter()
        content, raw_calls, usage, finish, first = self._call(params, request.on_text, t0)
        calls = tuple(tool_call(cid, name, args) for cid, name, args in raw_calls)
        text = content if calls or not tools else final_text(content)
        meta: dict[str, Any] = {"seconds": time.perf_counter() - t0, "model": self.model,
                                "mode": "tools" if tools else "text", "finish_reason": finish,
                                "grammar": "none"}
        if first is not None:
            meta["first_token_seconds"] = first
        return Completion(
            text=text, calls=calls or None,
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            completion_tokens=getattr(usage, "completion_tokens", None), meta=meta,
        )

    def _constrained(self, request: LLMRequest, kind: str) -> Completion:
        """One reply decoded by the server under the request's language (see the module docstring)."""
        messages = chat_messages(request.messages)
        t0 = time.perf_counter()
        seen: dict[str, Any] = {}

        def generate(language: StepGrammar | TextFormat, stop_when: Any, stream: bool) -> Generated:
            # ``stop_when`` is not needed: where it would stop, the server's grammar ends the reply.
            bound = language.max_chars
            limit = max(request.max_tokens, bound + 8) if bound is not None else request.max_tokens
            if limit > request.max_tokens and not self._room.asked:
                self._ask_context()  # a grown budget may not fit a small context
            params = self._params(request, limit, kind)
            params["messages"] = messages
            sent = served(kind, language)  # long runs unbounded: the budget above bounds them
            params["extra_body"] = {**params.get("extra_body", {}), **language_fields(kind, sent)}
            content, _, usage, finish, first = self._call(params, request.on_text if stream else None, t0,
                                                          language=True)
            seen.update(finish_reason=finish, first=first)
            if finish != "length" and not sent.accepts(content):
                seen["outside"] = True
            return Generated(content, getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None))

        if request.kind == "react":
            out, meta = run_step(step_grammar(request, self.options), generate, on_text=request.on_text,
                                 prefill=False)
        else:
            assert request.text_format is not None
            out, meta = generate(request.text_format, None, True), {}
        meta.update(seconds=time.perf_counter() - t0, model=self.model, mode="text", grammar=kind,
                    options=options_name(self.options), finish_reason=seen.get("finish_reason"))
        if seen.get("first") is not None:
            meta["first_token_seconds"] = seen["first"]
        done = Completion(out.text, prompt_tokens=out.prompt_tokens, completion_tokens=out.completion_tokens,
                          meta=meta)
        if seen.get("outside"):
            meta.pop("grounded", None)
            return self._warn(done, f"The server at {self.base_url} returned a reply outside the step language, "
                                    f"so it did not apply grammar={kind}; check the server kind "
                                    "(openai:MODEL@URL?grammar=...).")
        return done

    def _call(self, params: dict[str, Any], on_text: Any, t0: float, *,
              language: bool = False) -> tuple[str, list[tuple[str, str, Any]], Any, str | None, float | None]:
        """One chat completion (streamed when ``on_text`` is set), dropping parameters the server
        rejects as unsupported. With ``language``, any other 400/422 is :class:`_Rejected`."""
        import openai

        if on_text is not None:
            params["stream"] = True
            params["stream_options"] = {"include_usage": True}
        refitted = False
        for _ in range(len(_DROPPABLE) + 2):
            self._apply_quirks(params)
            if not refitted:
                self._room.fit(params)
            try:
                out = self._stream(params, on_text, t0) if on_text is not None else self._once(params)
                self._room.learn(params, getattr(out[2], "prompt_tokens", None))
                return out
            except openai.BadRequestError as exc:
                refused = overflow(getattr(exc, "body", None), _detail(exc, 1000))
                if refused is not None:  # too long for the context: not the grammar's fault
                    before = budget(params)
                    if refitted:
                        raise self._error(exc) from None
                    reason = self._room.refit(params, refused)
                    if reason is not None:
                        raise LLMError(f"The server at {self.base_url} refused the request: {reason}.") from None
                    if budget(params) == before:
                        raise self._error(exc) from None
                    refitted = True
                    continue
                quirk = _unsupported_param(exc)
                if quirk is None or quirk in self._quirks:
                    if language:
                        raise _Rejected(self._error(exc), params) from None
                    raise self._error(exc) from None
                self._quirks.add(quirk)
            except openai.UnprocessableEntityError as exc:
                if language:
                    raise _Rejected(self._error(exc), params) from None
                raise self._error(exc) from None
            except openai.OpenAIError as exc:
                raise self._error(exc) from None
        # pragma: no cover - every quirk can only be added once
        raise LLMError(f"The server at {self.base_url} kept rejecting request parameters.")

    def _apply_quirks(self, params: dict[str, Any]) -> None:
        for quirk in self._quirks:
            if quirk == "max_tokens" and "max_tokens" in params:
                params["max_completion_tokens"] = params.pop("max_tokens")
            else:
                params.pop(quirk, None)

    def _once(self, params: dict[str, Any]) -> tuple[str, list[tuple[str, str, Any]], Any, str | None, None]:
        resp = self.client().chat.completions.create(**params)
        if not resp.choices:
            raise LLMError(f"The server at {self.base_url} returned no choices for model '{self.model}'.")
        choice = resp.choices[0]
        msg = choice.message
        raw = [(tc.id or "", tc.function.name, tc.function.arguments)
               for tc in (msg.tool_calls or []) if getattr(tc, "function", None) is not None]
        return msg.content or "", raw, resp.usage, choice.finish_reason, None

    def _stream(self, params: dict[str, Any], on_text: Any,
                t0: float) -> tuple[str, list[tuple[str, str, Any]], Any, str | None, float | None]:
        import openai

        stream = self.client().chat.completions.create(**params)
        parts: list[str] = []
        slots: dict[int, dict[str, str]] = {}
        usage: Any = None
        finish: str | None = None
        first: float | None = None
        chunks = iter(stream)
        try:
            while True:
                try:
                    chunk = next(chunks)
                except StopIteration:
                    break
                except openai.APIConnectionError as exc:  # the reply began, then the connection dropped
                    cause = exc.__cause__ or exc
                    raise LLMError(f"The stream from {self.base_url} broke off mid-reply: "
                                   f"{one_line(cause).rstrip('.')}.") from None
                except openai.OpenAIError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a broken stream is the server's failure
                    raise LLMError(f"The stream from {self.base_url} broke off: {one_line(exc)}") from None
                if getattr(chunk, "usage", None) is not None:
                    usage = chunk.usage
                for choice in chunk.choices or ():
                    delta = choice.delta
                    finish = choice.finish_reason or finish
                    for tc in getattr(delta, "tool_calls", None) or ():
                        slot = slots.setdefault(tc.index if tc.index is not None else len(slots),
                                                {"id": "", "name": "", "arguments": ""})
                        slot["id"] = tc.id or slot["id"]
                        if tc.function is not None:
                            if tc.function.name and tc.function.name != slot["name"]:
                                slot["name"] += tc.function.name
                            slot["arguments"] += tc.function.arguments or ""
                    if delta.content:
                        if first is None:
                            first = time.perf_counter() - t0
                        parts.append(delta.content)
                        on_text(delta.content)
        finally:
            _close(stream)
        if finish is None:  # the body ended before the reply did (a connection closed mid-stream)
            raise LLMError(f"The stream from {self.base_url} ended mid-reply, before any finish reason "
                           f"(after {len(parts)} text chunks).")
        raw = [(s["id"], s["name"], s["arguments"]) for _, s in sorted(slots.items())]
        return "".join(parts), raw, usage, finish, first

    def _error(self, exc: Exception) -> LLMError:
        """One sentence for an SDK exception."""
        import openai

        where = f"the server at {self.base_url}"
        detail = _detail(exc)
        n = self.max_retries
        tries = f" after {n} {'retry' if n == 1 else 'retries'}" if n else ""
        if isinstance(exc, openai.APITimeoutError):
            msg = f"The LLM request to {where} timed out ({self.timeout:g} s){tries}."
        elif isinstance(exc, openai.APIConnectionError):
            msg = f"Cannot reach {where}{tries}; is the server running and the URL right?"
        elif isinstance(exc, openai.AuthenticationError):
            msg = f"The API key was rejected by {where} (HTTP 401); set OPENAI_API_KEY to a valid key."
        elif isinstance(exc, openai.PermissionDeniedError):
            msg = f"The API key may not use model '{self.model}' at {where} (HTTP 403): {detail}"
        elif isinstance(exc, openai.NotFoundError):
            msg = f"Model '{self.model}' was not found at {where} (HTTP 404); check the model name and base URL."
        elif isinstance(exc, openai.RateLimitError):
            msg = f"Rate limited by {where} (HTTP 429){tries}: {detail}"
        elif isinstance(exc, openai.InternalServerError):
            msg = f"The LLM server failed (HTTP {exc.status_code}){tries} at {where}: {detail}"
        elif isinstance(exc, openai.APIStatusError):
            msg = f"The request was rejected by {where} (HTTP {exc.status_code}): {detail}"
        else:
            msg = f"The OpenAI request to {where} failed: {one_line(exc)}"
        msg = " ".join(msg.split())
        return LLMError(msg if msg.endswith((".", "?")) else msg + ".")


def _close(stream: Any) -> None:
    close = getattr(stream, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # noqa: BLE001 - closing a broken stream may fail again
            pass


def _detail(exc: Exception, limit: int = 200) -> str:
    body = getattr(exc, "body", None)
    text = body.get("message") if isinstance(body, dict) else None
    text = " ".join(str(text or getattr(exc, "message", "") or exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _unsupported_param(exc: Exception) -> str | None:
    """Which droppable parameter a 400 complains about, if any."""
    param = getattr(exc, "param", None)
    text = f"{getattr(exc, 'code', '') or ''} {_detail(exc, 1000)}".lower()
    if param in _DROPPABLE and ("unsupported" in text or "not support" in text):
        return str(param)
    for name in _DROPPABLE:
        if f"'{name}'" in text and ("unsupported" in text or "not support" in text):
            return name
    return None


# -- OpenAI function-calling format, shared with other tool-calling adapters -------------------
def tool_specs(tools: Iterable[Tool]) -> list[dict[str, Any]]:
    """Tools as OpenAI function tools (``parameters`` is the tool's JSON schema)."""
    return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                              "parameters": t.json_schema()}} for t in tools]


def parse_arguments(raw: str | dict[str, Any] | None) -> dict[str, Any]:
    """Tool-call arguments as a dict; text that is not a JSON object is kept under
    :data:`INVALID_ARGUMENTS` so that validation fails and the model reads why."""
    if isinstance(raw, dict):
        return dict(raw)
    if raw is None or not str(raw).strip():
        return {}
    try:
        data = json.loads(raw)
    except (TypeError, ValueError):
        return {INVALID_ARGUMENTS: str(raw)}
    return data if isinstance(data, dict) else {INVALID_ARGUMENTS: str(raw)}


def tool_call(call_id: str | None, name: str, arguments: str | dict[str, Any] | None) -> Call:
    """An mmreact :class:`Call` from one native tool call (an id is made up when missing)."""
    return Call(name or "", (), parse_arguments(arguments), call_id or new_call_id())


def call_arguments(call: Call, tools: Sequence[Tool] = ()) -> dict[str, Any]:
    """The keyword arguments of ``call`` (positional ones named from the tool's parameters)."""
    kwargs = dict(call.kwargs)
    if call.args:
        names = next((tuple(p.name for p in t.params) for t in tools if t.name == call.tool), ())
        for i, value in enumerate(call.args):
            kwargs.setdefault(names[i] if i < len(names) else f"arg{i + 1}", value)
    return kwargs


def arguments_json(call: Call, tools: Sequence[Tool] = ()) -> str:
    """Arguments as the JSON text the model sent (malformed text is sent back unchanged)."""
    kwargs = call_arguments(call, tools)
    if set(kwargs) == {INVALID_ARGUMENTS}:
        return str(kwargs[INVALID_ARGUMENTS])
    return json.dumps(kwargs, ensure_ascii=False, default=str)


def final_text(content: str) -> str:
    """A tools-mode reply without tool calls: kept as is when it already reads as text ReAct
    (``Action:`` lines or a ``Final Answer:``), else taken as the final answer."""
    content = (content or "").strip()
    if not content:
        return ""
    try:
        parse(content)
    except ParseError:
        return f"Final Answer: {content}"
    return content


def tool_rounds(messages: Sequence[Message]) -> list[tuple[Message, bool]]:
    """Each message with whether its results go back as tool messages: an ``observation``
    whose ids all answer the calls of the assistant message just before it."""
    out: list[tuple[Message, bool]] = []
    open_ids: set[str] = set()
    for m in messages:
        native = False
        if m.role == "assistant":
            open_ids = {c.id for c in m.calls}
        elif m.role == "observation":
            native = bool(m.results) and bool(open_ids) and {cid for cid, _ in m.results} <= open_ids
            open_ids = set()
        out.append((m, native))
    return out


def openai_messages(messages: Sequence[Message], tools: Sequence[Tool] = (), *,
                    note: str | None = None) -> list[dict[str, Any]]:
    """The transcript as OpenAI chat messages for native tool calling."""
    out: list[dict[str, Any]] = []
    noted = note is None
    for m, native in tool_rounds(messages):
        if m.role == "system":
            content = m.content if noted else f"{m.content}\n\n{note}"
            noted = True
            out.append({"role": "system", "content": content})
        elif m.role == "assistant":
            msg: dict[str, Any] = {"role": "assistant", "content": m.content or None}
            if m.calls:
                msg["tool_calls"] = [
                    {"id": c.id, "type": "function",
                     "function": {"name": c.tool, "arguments": arguments_json(c, tools)}}
                    for c in m.calls
                ]
            elif not m.content:
                msg["content"] = ""
            out.append(msg)
        elif native:
            out.extend({"role": "tool", "tool_call_id": cid, "content": text} for cid, text in m.results)
        else:  # user messages, and observations that answer no native call
            out.append({"role": "user", "content": m.content})
    if not noted:
        out.insert(0, {"role": "system", "content": note})
    return out
