"""The ReAct loop: run, stream and chat sessions. No prompt text and no I/O live here."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from . import grounding as grounding_
from . import prefetch as prefetching
from . import prompts, protocol
from ._hashing import digest, llm_settings
from .errors import ConfigError, LLMError, MMReactError, one_line
from .images import ImagePolicy, ImageSource, ImageTable
from .llms.base import LLM, LLMRequest, Message
from .observation import Observation, utf8_text
from .prefetch import Policy
from .result import Result
from .tools import ArgumentError, Tool
from .trace import CallRecord, ImageRecord, StepRecord, Trace

#: An observation the model wrote itself (only the engine writes observations): cut from the reply.
_SELF_OBSERVATION = re.compile(r"\n\s*(?:Observation\s*:|<\s*/?\s*observation\b)", re.IGNORECASE)
#: Replies longer than this are cut before parsing (a runaway model must not flood the context).
MAX_REPLY_CHARS = 20_000
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="mmreact-tool")
        return _pool


class Agent:
    """A text-only LLM that answers questions about images by calling vision tools.

    Args:
        llm: an :class:`~mmreact.llms.base.LLM`, a spec string (``"default"``, ``"scripted:replies.json"``,
            ``"openai:gpt-4o-mini"`` ...) or a LangChain chat model. ``None`` means ``"default"``.
        tools: tool names, Tool objects or functions; ``None`` means every tool that can run here.
        max_steps: model turns per question before the run stops with status ``"max_steps"``.
        max_errors: after this many unusable steps in a row (unparseable replies, or steps whose
            calls all failed) the run stops with status ``"too_many_errors"`` (1: at the first).
        tool_timeout: seconds one step's tool calls may take, together (they run concurrently and
            share one deadline), before the unfinished ones are reported to the model as timed out.
        prefetch: which experts start on new images before the model asks (``"auto"``, ``"none"``,
            ``"all"`` or tool names; see :mod:`mmreact.prefetch`).
        image_policy: size limits and an optional allowed folder for image files
            (default: :meth:`ImagePolicy.from_env`).
        examples: solved examples shown before every question (:mod:`mmreact.fewshot`): a list of
            :class:`mmreact.fewshot.Example` or a JSONL file; checked and run when the agent is created.
        grounding: how answers are held to what the experts saw (:mod:`mmreact.grounding`):
            ``"constrain"``: a backend that decodes under a grammar writes the final answer as a run
            of words of the observations' content (or an option the question offers, yes / no), so
            it cannot copy format text, invent a number or loop; ``"reask"``: when an answer states
            facts no observation supports, the model is asked once more, naming them (both replies
            are in the trace; the re-ask does not count against ``max_steps``); ``"check"``: every
            answer is checked and the result recorded, nothing else changes; ``"off"``: no check.
            ``"auto"`` (default): ``"constrain"`` where the backend grounds by default (the
            embedded default and other small-model settings), else ``"check"``. Every answered
            trace records its check (``trace.grounding``) and the setting (``trace.grounding_mode``).
    """

    def __init__(
        self,
        llm: LLM | str | Any | None = None,
        tools: Iterable[str | Tool | Callable[..., Any]] | None = None,
        *,
        max_steps: int = 8,
        max_errors: int = 3,
        tool_timeout: float | None = None,
        system_prompt: str | None = None,
        image_policy: ImagePolicy | None = None,
        prefetch: Policy = "auto",
        examples: Any = None,
        grounding: str = "auto",
    ) -> None:
        from .llms import load_llm
        from .tools.registry import resolve_tools

        if max_steps < 1:
            raise ConfigError(f"max_steps must be at least 1, got {max_steps}.")
        if max_errors < 1:
            raise ConfigError(f"max_errors must be at least 1, got {max_errors}.")
        if tool_timeout is not None and not tool_timeout > 0:
            raise ConfigError(f"tool_timeout must be a positive number of seconds, got {tool_timeout}.")
        self.llm: LLM = load_llm(llm)
        self.tools: list[Tool] = resolve_tools(tools, ready_only=tools is None)
        self._by_name = {t.name: t for t in self.tools}
        self.max_steps = max_steps
        self.max_errors = max_errors
        self.tool_timeout = tool_timeout
        self.system_prompt = system_prompt or prompts.system_prompt(self.tools, thoughts=self.llm.writes_thoughts)
        self.image_policy = image_policy
        self.prefetch = prefetching.validate(prefetch, self.tools)
        self.grounding: grounding_.Mode = _grounding_mode(grounding, self.llm)
        self._llm_loading: Future[float] | None = None
        self._llm_loading_lock = threading.Lock()
        from .fewshot import for_agent

        self.examples = for_agent(examples, self.tools, self.llm, image_policy) if examples is not None else None

    def load(self) -> dict[str, float]:
        """Load the LLM and every tool's model now, instead of lazily in the first run; the LLM
        loads alongside the tools (transformers checkpoints load one after another).

        Returns the seconds each part took (``"llm"`` and each tool's name). A tool that cannot
        load here (weights missing) is left to fail as an observation when it is called.
        """
        timings: dict[str, float] = {}

        def timed(name: str, load: Callable[[], Any]) -> None:
            t0 = time.perf_counter()
            try:
                load()
            except Exception:  # noqa: BLE001 - a tool's failure shows when the model calls it
                return
            timings[name] = time.perf_counter() - t0

        llm = self._start_llm_load()
        for t in self.tools:
            timed(t.name, t.ensure_ready)
        timings["llm"] = llm.result()  # raises the LLM's own load error
        return timings

    def _start_llm_load(self) -> Future[float]:
        """Start loading the LLM in the background, once per agent (again only after a failure):
        the first turn calls this so that the LLM loads while the images are read and the first
        experts run (a forced first call, prefetch jobs), not after them. The future gives the
        seconds the load took; a turn ignores a failure, which the model's first call reports."""
        with self._llm_loading_lock:
            loading = self._llm_loading
            if loading is None or (loading.done() and loading.exception() is not None):
                loading = self._llm_loading = _executor().submit(self._timed_llm_load)
            return loading

    def _timed_llm_load(self) -> float:
        t0 = time.perf_counter()
        self.llm.load()
        if self.grounding == "constrain" and getattr(self.llm, "ranks_answers", False):
            grounding_.embedder()  # the question-relevance model of grounded answers, loaded beside the LLM
        return time.perf_counter() - t0

    def eval_settings(self) -> dict[str, Any]:
        """The settings that decide how this agent answers: what an eval result's fingerprint holds
        (see :mod:`mmreact.eval.fingerprint`), so results made with other settings never mix."""
        return {
            "type": "mmreact.Agent",
            "llm": llm_settings(self.llm),
            "tools": [{"name": t.name, "cache_version": getattr(t, "cache_version", None)} for t in self.tools],
            "max_steps": self.max_steps,
            "max_errors": self.max_errors,
            "tool_timeout": self.tool_timeout,
            "system_prompt": digest(self.system_prompt),
            "grounding": self.grounding,
        }

    def chat(self) -> Chat:
        """Start a multi-turn session that keeps images, turns and observations."""
        return Chat(self)

    def run(self, question: str, images: Sequence[ImageSource] | ImageSource = (), **callbacks: Any) -> Result:
        """Answer one question about ``images`` (paths, PIL images or numpy arrays)."""
        return Chat(self).ask(question, images, **callbacks)

    def stream(self, question: str, images: Sequence[ImageSource] | ImageSource = ()) -> Iterator[StepRecord | Result]:
        """Yield each :class:`StepRecord` as it completes, then the :class:`Result`."""
        return Chat(self).stream(question, images)

    # -- one tool call -------------------------------------------------------------------
    def _prepare(self, call: protocol.Call, images: ImageTable) -> tuple[Tool, dict[str, Any], str] | CallRecord:
        tool = self._by_name.get(call.tool)
        if tool is None:
            names = ", ".join(self._by_name) or "none"
            return _error_record(call, f"there is no tool named '{call.tool}'. Available tools: {names}.")
        try:
            bound = tool.bind(call.args, call.kwargs)
        except ArgumentError as exc:
            return _error_record(call, str(exc))
        for pname in tool.image_params:
            handle = bound[pname]
            if handle not in images:
                known = ", ".join(images.handles) or "none"
                return _error_record(
                    call, f"'{handle}' is not an image handle for {tool.name}.{pname}; images: {known}."
                )
        return tool, bound, tool.canonical(bound)

    def _execute(self, tool: Tool, bound: dict[str, Any], canonical: str, images: ImageTable,
                 ahead: prefetching.Prefetch | None = None) -> CallRecord:
        resolved = {k: (images.get(v) if k in tool.image_params else v) for k, v in bound.items()}
        t0 = time.perf_counter()
        source = "computed"
        try:
            obs, source = tool.invoke_shared(resolved)
        except MMReactError as exc:
            obs = Observation.failure(f"{tool.name} could not run: {one_line(exc)}")
        except Exception as exc:  # noqa: BLE001 - a tool that raises becomes an observation
            obs = Observation.failure(f"{tool.name} failed: {one_line(exc)}")
        reused = (None if source == "computed" else
                  "prefetch" if ahead is not None and ahead.answered(canonical, source) else "cache")
        return CallRecord(
            tool=tool.name, call=canonical, args=bound, text=obs.text, artifact=obs.artifact,
            error=obs.error, reused=reused, seconds=time.perf_counter() - t0,
        )

    def _run_calls(self, calls: Sequence[protocol.Call], session: Chat) -> list[CallRecord]:
        """Validate every call, answer repeats from the session's memory, run the rest (concurrently
        when there are several, under one shared deadline), and remember what succeeded: a call
        that failed or timed out is not remembered, so it can be retried once its cause is fixed."""
        records: list[CallRecord | None] = [None] * len(calls)
        todo: dict[str, tuple[int, Tool, dict[str, Any]]] = {}  # canonical call -> first index
        repeats: dict[int, str] = {}  # index -> canonical call of an identical call in this step
        for i, call in enumerate(calls):
            prepared = self._prepare(call, session.images)
            if isinstance(prepared, CallRecord):
                records[i] = prepared
                continue
            tool, bound, canonical = prepared
            earlier = session.memo.get(canonical)
            if earlier is not None:
                records[i] = earlier.model_copy(update={"reused": "repeat", "seconds": 0.0})
            elif canonical in todo:
                repeats[i] = canonical
            else:
                todo[canonical] = (i, tool, bound)
        ran: dict[str, CallRecord] = {}
        ahead = session.prefetch
        if len(todo) == 1 and self.tool_timeout is None:
            ((canonical, (_, tool, bound)),) = todo.items()
            ran[canonical] = self._execute(tool, bound, canonical, session.images, ahead)
        elif todo:
            pool = _executor()
            started = time.monotonic()
            futures = {canonical: pool.submit(self._execute, tool, bound, canonical, session.images, ahead)
                       for canonical, (_, tool, bound) in todo.items()}
            for canonical, fut in futures.items():
                i, tool, _ = todo[canonical]
                left = None if self.tool_timeout is None else max(0.0, started + self.tool_timeout - time.monotonic())
                try:
                    ran[canonical] = fut.result(timeout=left)
                except FutureTimeout:
                    records[i] = CallRecord(
                        tool=tool.name, call=canonical, args={}, error=True, seconds=float(self.tool_timeout or 0),
                        text=f"Error: {tool.name} timed out after {self.tool_timeout:g} s.",
                    )
        session.memo.update({canonical: r for canonical, r in ran.items() if not r.error})
        for canonical, record in ran.items():
            records[todo[canonical][0]] = record
        for i, canonical in repeats.items():
            first = records[todo[canonical][0]]
            assert first is not None
            records[i] = first.model_copy(update={"reused": "repeat", "seconds": 0.0})
        return [r for r in records if r is not None]


GROUNDING_SETTINGS = ("auto", "constrain", "reask", "check", "off")


def _grounding_mode(setting: str, llm: LLM) -> grounding_.Mode:
    if setting not in GROUNDING_SETTINGS:
        raise ConfigError(f"grounding must be one of {', '.join(GROUNDING_SETTINGS)}; got {setting!r}.")
    if setting == "auto":
        return "constrain" if getattr(llm, "grounds_by_default", False) else "check"
    if setting == "constrain" and not getattr(llm, "grounds_answers", False):
        raise ConfigError(f"grounding='constrain' needs an LLM that decodes under a grammar (default, gguf:, hf:, or "
                          f"a server that takes one); {llm.name} does not: use grounding='reask' or 'check'.")
    return setting  # type: ignore[return-value]


def reask_text(check: grounding_.Grounding) -> str:
    """What the engine says when an answer states facts no observation supports (``grounding="reask"``)."""
    named = ", ".join(repr(f.text) for f in check.unsupported)
    return (f"Your answer states {named}, which no observation supports. Answer again using only what the "
            "observations say; if they do not answer the question, say so.")


def _error_record(call: protocol.Call, message: str) -> CallRecord:
    return CallRecord(tool=call.tool, call=call.text(), args=dict(call.kwargs) or {"args": list(call.args)},
                      text=f"Error: {message}", error=True)


class Chat:
    """A multi-turn session: earlier turns, images and observations stay in context, and an
    identical call made in an earlier turn is answered from memory without re-running the tool."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.images = ImageTable(agent.image_policy)
        self.messages: list[Message] = [Message("system", agent.system_prompt)]
        if agent.examples is not None:  # solved examples, as completed exchanges (mmreact.fewshot)
            self.messages.extend(agent.examples.messages)
        self.memo: dict[str, CallRecord] = {}
        self.turns: list[Result] = []
        #: The calls started ahead of the model for the current turn (see :mod:`mmreact.prefetch`).
        self.prefetch = prefetching.Prefetch()

    def _repr_html_(self) -> str:
        from .views.notebook import chat_html
        return chat_html(self.turns)

    def _answer_phrases(self, question: str) -> tuple[tuple[tuple[str, ...], ...] | None, tuple[float, ...] | None]:
        """What a grounded answer is built from (``grounding="constrain"``; before any observation
        only the question's options, or :data:`mmreact.grounding.NOTHING_SEEN`), and each phrase's
        relevance to the question for a backend that ranks answers."""
        if self.agent.grounding != "constrain":
            return None, None
        evidence = grounding_.evidence_from_calls(self.memo.values())
        phrases = tuple(grounding_.answer_phrases(evidence, question))
        if not getattr(self.agent.llm, "ranks_answers", False):
            return phrases, None
        scores = grounding_.relevance(question, [" ".join(p) for p in phrases])
        if scores is None:
            return phrases, None
        prior = grounding_.layout_prior(evidence, phrases, question)  # a title is printed first
        return phrases, tuple(s + b for s, b in zip(scores, prior, strict=True))

    def ask(
        self,
        question: str,
        images: Sequence[ImageSource] | ImageSource = (),
        *,
        on_step: Callable[[StepRecord], None] | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Result:
        """Ask a question (optionally adding images); returns the :class:`Result`."""
        result: Result | None = None
        for event in self._loop(question, images, on_text):
            if isinstance(event, Result):
                result = event
            elif on_step is not None:
                on_step(event)
        assert result is not None
        return result

    def stream(self, question: str, images: Sequence[ImageSource] | ImageSource = (),
               on_text: Callable[[str], None] | None = None) -> Iterator[StepRecord | Result]:
        """Yield each step as it completes, then the :class:`Result`."""
        return self._loop(question, images, on_text)

    def _loop(self, question: str, images: Sequence[ImageSource] | ImageSource,
              on_text: Callable[[str], None] | None) -> Iterator[StepRecord | Result]:
        try:
            yield from self._turn(question, images, on_text)
        finally:  # answered, stopped, failed or abandoned by its reader: unused prefetch jobs go
            self.prefetch.end()

    def _turn(self, question: str, images: Sequence[ImageSource] | ImageSource,
              on_text: Callable[[str], None] | None) -> Iterator[StepRecord | Result]:
        if not isinstance(question, str) or not question.strip():
            raise ConfigError("The question is empty; ask something about the image(s).")
        agent = self.agent
        agent._start_llm_load()
        sources = [images] if isinstance(images, (str, bytes)) or not isinstance(images, Sequence) else list(images)
        before = len(self.images)
        memo_before = dict(self.memo)
        handles = self.images.add_all(sources)  # validates all first; raises ImageError
        new = [h for h in dict.fromkeys(handles) if int(h.split("_")[1]) > before]
        started = time.perf_counter()
        turn_start = len(self.messages)

        def roll_back() -> None:
            """A turn that ends in an LLM error leaves the session as it was before the turn."""
            del self.messages[turn_start:]
            self.memo = memo_before
            self.images.truncate(before)

        self.prefetch = prefetching.Prefetch()
        # Chosen per turn: weights pulled since the agent was made count (a guess never downloads).
        ahead = prefetching.choose(agent.prefetch, agent.tools, agent.llm) if new else ()
        if ahead:
            self.prefetch.start(ahead, new, self.images)
        self.messages.append(Message("user", prompts.question_text(question, new, self.images)))
        steps: list[StepRecord] = []
        failures = 0
        answer: str | None = None
        status, message = "max_steps", f"Stopped after {agent.max_steps} steps without a final answer."

        def trace() -> Trace:
            return Trace(
                question=question,
                images=tuple(ImageRecord(handle=h, source=img.source, width=img.width, height=img.height,
                                         sha256=img.sha256) for h, img in self.images.items()),
                steps=tuple(steps), answer=answer, status=status if answer is None else "answered",
                message=None if answer is not None else message, llm=agent.llm.name,
                seconds=time.perf_counter() - started,
                prefetched=self.prefetch.records({c.call for s in steps for c in s.calls if not c.error}),
                grounding_mode=agent.grounding,
            )

        limit = agent.max_steps
        reasked: str | None = None  # the first answer, once the model was asked again
        index = 0
        while index < limit:
            index += 1
            phrases, relevance = self._answer_phrases(question)
            request = LLMRequest(
                messages=tuple(self.messages), stop=("\nObservation:", "<observation"),
                tools=agent.tools, handles=tuple(self.images.handles),
                done_calls=frozenset(self.memo), on_text=on_text, kind="react", answer_phrases=phrases,
                answer_relevance=relevance,
            )
            t0 = time.perf_counter()
            try:
                completion = agent.llm.complete(request)
            except LLMError as exc:
                status, message = "llm_error", str(exc)
                partial = trace()
                roll_back()
                raise exc.with_trace(partial) from None
            except Exception as exc:  # noqa: BLE001 - a backend bug still keeps the partial trace
                status, message = "llm_error", f"The LLM backend failed: {one_line(exc)}"
                partial = trace()
                roll_back()
                raise LLMError(message, trace=partial) from exc
            llm_seconds = time.perf_counter() - t0
            text = utf8_text((completion.text or "")[:MAX_REPLY_CHARS])  # lone surrogates would break JSON
            cut = _SELF_OBSERVATION.search(text)
            if cut:
                text = text[: cut.start()]
            text = text.strip()
            error: str | None = None
            parsed: protocol.Parsed | None = None
            if completion.calls:
                parsed = protocol.Parsed(thought=text or None, calls=completion.calls)
            else:
                try:
                    parsed = protocol.parse(text)
                except protocol.ParseError as exc:
                    error = str(exc)
            decided = completion.meta.get("decided")
            choices = completion.meta.get("ranked", completion.meta.get("choices"))  # candidates ranked, or replies allowed
            common = dict(index=index, llm_text=text, llm_seconds=llm_seconds, llm_wait_seconds=completion.wait_seconds,
                          prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens,
                          decided=decided if decided in ("after_thought", "without_thought", "forced", "ranked") else None,
                          choices=choices if isinstance(choices, int) else None,
                          warning=completion.meta.get("warning") if isinstance(completion.meta.get("warning"), str)
                          else None)
            self.messages.append(Message("assistant", text, calls=completion.calls or ()))
            if parsed is None:
                step = StepRecord(**common, error=error)
                self.messages.append(Message("observation", prompts.retry_text(error or "")))
            elif parsed.final_answer is not None:
                check = None
                if agent.grounding != "off":
                    mode = ("constrain" if completion.meta.get("grounded") else
                            "reask" if agent.grounding == "reask" else "check")
                    check = grounding_.ground(parsed.final_answer, grounding_.evidence_from_calls(self.memo.values()),
                                              question, mode, first_answer=reasked)
                if check is not None and agent.grounding == "reask" and reasked is None and not check.supported:
                    reasked = parsed.final_answer
                    note = reask_text(check)
                    step = StepRecord(**common, thought=parsed.thought, final_answer=parsed.final_answer,
                                      grounding=check, reask=note)
                    self.messages.append(Message("observation", note))
                    limit += 1  # the re-ask does not count against max_steps
                    steps.append(step)
                    yield step
                    continue
                answer = parsed.final_answer
                step = StepRecord(**common, thought=parsed.thought, final_answer=answer, grounding=check)
                steps.append(step)
                yield step
                break
            else:
                t1 = time.perf_counter()
                records = agent._run_calls(parsed.calls, self)
                step = StepRecord(**common, thought=parsed.thought, calls=tuple(records),
                                  tool_seconds=time.perf_counter() - t1)
                self.messages.append(Message(
                    "observation", prompts.observations_text(records),
                    results=tuple((c.id, r.text) for c, r in zip(parsed.calls, records)),
                ))
                error = "every call failed" if all(r.error for r in records) else None
            steps.append(step)
            yield step
            failures = failures + 1 if error else 0
            if failures >= agent.max_errors:
                status = "too_many_errors"
                message = f"Stopped after {failures} unusable steps in a row (last problem: {error})."
                break
        self.prefetch.end()  # before the trace, which then lists the jobs it cancelled
        result = Result(answer=answer, trace=trace(), images={h: img for h, img in self.images.items()})
        self.turns.append(result)
        yield result
