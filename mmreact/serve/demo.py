"""``mmreact demo``: a Gradio multimodal chat. Drop images, ask; each tool call appears as a
collapsible message (``ocr(image_1)`` with its observation) as it happens, and the answer comes
with the image(s) the experts found something on, boxes drawn.

The agent runs in this process (:func:`local_events`) or behind a running ``mmreact serve``
(:func:`remote_events`, through the ``openai`` SDK); both read the conversation the same way the
server does (:mod:`mmreact.serve.request`): every image in the chat is ``image_1..N`` in order, and
earlier turns are replayed as context. Bound to 127.0.0.1, analytics off, no web fonts fetched.

Every upload is checked when it arrives, with the checks the server makes (:func:`upload_problem`).
A file that is not a usable image is reported once, by its file name, and that turn is not run; it
is then left out of every later turn (the chat resends the whole history each turn, so one corrupt
upload would otherwise make every later question in the chat fail).
"""

from __future__ import annotations

import base64
import mimetypes
import os
import queue
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..agent import Agent
from ..errors import ImageError, MMReactError
from ..images import Image, ImagePolicy, load_bytes, load_image
from ..result import Result
from ..trace import StepRecord, Trace
from ..views.steps import describe
from ._errors import APIError
from ._request import parse_request
from ._runner import AgentRun, Event

if TYPE_CHECKING:
    import gradio as gr

MODEL = "mmreact"
TITLE = "mmreact: ask about your images"
DESCRIPTION = ("A text-only LLM answers by calling vision experts. Drop one or more images, ask a question, and "
               "watch each tool call (click one to see what the expert saw).")
MAX_OBSERVATION_CHARS = 3000
#: how the chat shows an error (such messages are not replayed as the assistant's answers)
ERROR_PREFIX = "Error: "


@dataclass(frozen=True)
class Update:
    """What the chat shows next: model text being written, a finished step, the result, or an error."""

    text: str | None = None
    step: StepRecord | None = None
    result: Result | None = None
    error: str | None = None


# -- the conversation as OpenAI messages ----------------------------------------------------------
def _file_path(part: Any) -> str | None:
    if isinstance(part, dict):
        if part.get("type") == "file" and isinstance(part.get("file"), dict):
            return part["file"].get("path")
        if "path" in part and part.get("type") in (None, "file"):
            return part.get("path")
    return None


def _text(part: Any) -> str | None:
    if isinstance(part, str):
        return part
    if isinstance(part, dict) and part.get("type") == "text":
        return part.get("text")
    return None


def data_url(path: str | Path) -> str:
    media = mimetypes.guess_type(str(path))[0] or "image/png"
    if not media.startswith("image/"):
        media = "image/png"  # the server validates the bytes themselves
    return f"data:{media};base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


_checked: dict[tuple[str, int, int], str | None] = {}
_CHECKED_MAX = 10_000  # verdicts remembered (a long-running demo forgets them all past this)


def upload_problem(path: str, policy: ImagePolicy | None = None) -> str | None:
    """None when the uploaded file is an image the agent can use, else one sentence that names it by
    its file name (what the user uploaded, not the upload folder). Remembered per file and version."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"{Path(path).name} cannot be read ({exc.strerror or exc})."
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _checked:
        if len(_checked) >= _CHECKED_MAX:
            _checked.clear()
        try:
            load_bytes(Path(path).read_bytes(), Path(path).name, policy=policy or ImagePolicy())
            _checked[key] = None
        except ImageError as exc:
            _checked[key] = str(exc)
        except OSError as exc:
            _checked[key] = f"{Path(path).name} cannot be read ({exc.strerror or exc})."
    return _checked[key]


def new_uploads(message: dict[str, Any]) -> list[str]:
    """The files of the message being sent."""
    found = [f if isinstance(f, str) else (f or {}).get("path") for f in message.get("files") or []]
    return [f for f in found if f]


def openai_messages(message: dict[str, Any], history: list[dict[str, Any]],
                    usable: Callable[[str], bool] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """The chat so far plus the new message as OpenAI messages, and the image files in order.

    Tool-call and image messages the demo showed are left out; answers are kept. ``usable(path)``
    (when given) leaves out the uploads it refuses.
    """
    out: list[dict[str, Any]] = []
    files: list[str] = []

    def add_user(texts: list[str], paths: list[str]) -> None:
        if usable is not None:
            paths = [p for p in paths if usable(p)]
        parts: list[dict[str, Any]] = [{"type": "text", "text": t} for t in texts if t]
        parts += [{"type": "image_url", "image_url": {"url": data_url(p)}} for p in paths]
        files.extend(paths)
        if out and out[-1]["role"] == "user":  # Gradio keeps each upload as its own message
            out[-1]["content"].extend(parts)
        elif parts:
            out.append({"role": "user", "content": parts})

    for item in history:
        role, content = item.get("role"), item.get("content")
        parts = content if isinstance(content, list) else [content]
        if role == "user":
            add_user([t for p in parts if (t := _text(p))], [f for p in parts if (f := _file_path(p))])
        elif role == "assistant" and not (item.get("metadata") or {}).get("title"):
            text = "\n".join(t for p in parts if (t := _text(p)))
            if text.strip() and not text.startswith(ERROR_PREFIX):  # an error is no answer to replay
                out.append({"role": "assistant", "content": text})
    add_user([message.get("text") or ""], new_uploads(message))
    return out, files


# -- event sources --------------------------------------------------------------------------------
def local_events(agent: Agent, messages: list[dict[str, Any]], *, max_images: int = 16) -> Iterator[Update]:
    """Run the agent in this process (a thread per question, as the server does)."""
    try:
        request = parse_request({"model": MODEL, "messages": messages}, model_name=MODEL, max_images=max_images)
    except APIError as exc:
        yield Update(error=exc.message)
        return
    events: queue.Queue[Event] = queue.Queue()
    run = AgentRun(agent, request, post=events.put, policy=ImagePolicy(), fetcher=None, history_turns=8,
                   history_chars=2000, on_finish=lambda seconds, outcome: None)
    run.start()
    try:
        while True:
            event = events.get(timeout=600)
            if event.kind == "text":
                yield Update(text=event.value)
            elif event.kind == "step":
                yield Update(step=event.value)
            elif event.kind == "result":
                yield Update(result=event.value)
            elif event.kind in ("bad_image", "error"):
                yield Update(error=str(event.value))
            elif event.kind == "llm_error":
                yield Update(error=f"The LLM failed: {event.value}")
            elif event.kind == "end":
                return
    finally:
        run.cancel()  # the user pressed stop, or the page went away


def remote_events(base_url: str, api_key: str | None, messages: list[dict[str, Any]], files: list[str],
                  model: str = MODEL) -> Iterator[Update]:
    """Ask a running ``mmreact serve`` (streaming) through the ``openai`` SDK."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key=api_key or "unused", max_retries=0, timeout=600)
    try:
        stream = client.chat.completions.create(model=model, messages=messages, stream=True)  # type: ignore[arg-type]
        with stream:
            answer = ""
            for chunk in stream:
                extra = chunk.model_extra or {}
                if not chunk.choices:
                    continue
                delta = chunk.choices[0].delta
                step = (extra.get("mmreact") or {}).get("step")
                reasoning = (delta.model_extra or {}).get("reasoning_content")
                if step is not None:
                    yield Update(step=StepRecord.model_validate(step))
                elif reasoning:
                    yield Update(text=reasoning)
                if delta.content:
                    answer += delta.content
                trace = (extra.get("mmreact") or {}).get("trace")
                if trace is not None:
                    trace_obj = Trace.model_validate(trace)
                    yield Update(result=Result(answer=trace_obj.answer, trace=trace_obj,
                                               images=_images_by_handle(trace_obj, files)))
    except openai.APIStatusError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        yield Update(error=str(body.get("message") or exc.message))
    except openai.APIError as exc:
        yield Update(error=str(exc.message))


def _images_by_handle(trace: Trace, files: list[str]) -> dict[str, Image]:
    """The trace's handles mapped to the local files they were made from (by content hash)."""
    by_hash: dict[str, Image] = {}
    for f in files:
        try:
            image = load_image(f)
        except MMReactError:
            continue
        by_hash.setdefault(image.sha256, image)
    return {rec.handle: by_hash[rec.sha256] for rec in trace.images if rec.sha256 in by_hash}


# -- what the chat shows ----------------------------------------------------------------------------
def _observation(text: str) -> str:
    if len(text) > MAX_OBSERVATION_CHARS:
        text = text[:MAX_OBSERVATION_CHARS] + f"\n[... {len(text) - MAX_OBSERVATION_CHARS} more characters]"
    return "```text\n" + text.replace("```", "'''") + "\n```"


def annotated_images(result: Result) -> list[tuple[str, Any]]:
    """``(handle, PIL image)`` for each image some tool found boxes on."""
    from ..views.boxes import calls_for, findings

    out = []
    for handle, image in result.images.items():
        artifacts = calls_for(result, handle)
        if findings(artifacts, image.width, image.height):
            out.append((handle, result.annotated(handle)))
    return out


_folder: str | None = None


def _save_png(picture: Any, handle: str) -> str:
    """Write an annotated image under Gradio's upload folder (Gradio serves it from there and copies it
    into its cache); the folder is removed when the process exits."""
    global _folder
    import atexit
    import shutil
    import tempfile

    from gradio.utils import get_upload_folder

    if _folder is None or not os.path.isdir(_folder):
        Path(get_upload_folder()).mkdir(parents=True, exist_ok=True)
        _folder = tempfile.mkdtemp(prefix="mmreact-demo-", dir=get_upload_folder())
        atexit.register(shutil.rmtree, _folder, ignore_errors=True)
    fd, name = tempfile.mkstemp(prefix=f"{handle}-", suffix=".png", dir=_folder)
    with os.fdopen(fd, "wb") as f:
        picture.save(f, format="PNG")
    return name


def messages_for(steps: list[StepRecord], pending: str | None, result: Result | None, error: str | None) -> list[Any]:
    """The assistant messages of one turn so far."""
    import gradio as gr

    shown: list[Any] = []
    for step in steps:
        v = describe(step)
        for call in v.calls:
            body = (f"*{v.thought}*\n\n" if v.thought else "") + _observation(call.text)
            title = call.call + (" (error)" if call.error else "")
            shown.append(gr.ChatMessage(content=body, metadata={"title": title, "status": "done",
                                                               "duration": round(call.seconds, 2)}))
        if v.unusable:
            shown.append(gr.ChatMessage(content=_observation(v.reply),
                                        metadata={"title": f"Unusable reply: {v.unusable}", "status": "done"}))
        if v.reask:  # an answer that was not taken: shown with its check
            shown.append(gr.ChatMessage(content=_observation(f"{v.answer}\n\n" + "\n".join(v.grounding_lines)),
                                        metadata={"title": f"Answer not taken: {v.reask}", "status": "done"}))
    if pending is not None:
        shown.append(gr.ChatMessage(content=pending, metadata={"title": "Planning", "status": "pending"}))
    if result is not None:
        shown.append(gr.ChatMessage(content=result.answer if result.answer is not None
                                    else f"No answer: {result.message}"))
        last = describe(result.trace.steps[-1]) if result.trace.steps else None
        if last is not None and last.answer is not None and last.grounding_lines:  # its check, folded
            shown.append(gr.ChatMessage(content=_observation("\n".join(last.grounding_lines[1:]) or "-"),
                                        metadata={"title": last.grounding_lines[0], "status": "done"}))
        for handle, picture in annotated_images(result):
            shown.append(gr.ChatMessage(content={"path": _save_png(picture, handle),
                                                 "alt_text": f"{handle}: what the experts found"}))
    if error is not None:
        shown.append(gr.ChatMessage(content=f"{ERROR_PREFIX}{error}"))
    return shown


def turn(updates: Iterator[Update]) -> Iterator[list[Any]]:
    """Fold updates into the turn's messages; yield the messages after each update."""
    steps: list[StepRecord] = []
    pending: str | None = ""
    result: Result | None = None
    error: str | None = None
    yield messages_for(steps, pending, result, error)
    for update in updates:
        if update.text is not None:
            pending = (pending or "") + update.text
        if update.step is not None:
            steps.append(update.step)
            pending = ""
        if update.result is not None:
            result, pending = update.result, None
        if update.error is not None:
            error, pending = update.error, None
        yield messages_for(steps, pending, result, error)


# -- the app ------------------------------------------------------------------------------------------
def build_demo(agent: Agent | None = None, *, server: str | None = None, api_key: str | None = None,
               model: str = MODEL) -> gr.ChatInterface:
    """The Gradio app: in-process with ``agent``, or against ``server`` (an ``.../v1`` base URL)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    if server is None and agent is None:
        agent = Agent()

    def respond(message: dict[str, Any], history: list[dict[str, Any]]) -> Iterator[list[Any]]:
        bad = [problem for path in new_uploads(message) if (problem := upload_problem(path))]
        if bad:  # reported once, now; left out of every later turn
            what = "It is" if len(bad) == 1 else "They are"
            yield [gr.ChatMessage(content=f"{ERROR_PREFIX}{' '.join(bad)} {what} left out of this chat: upload the "
                                          "image again, or another one, and ask.")]
            return
        try:
            messages, files = openai_messages(message, history, usable=lambda p: upload_problem(p) is None)
        except OSError as exc:
            yield [gr.ChatMessage(content=f"{ERROR_PREFIX}cannot read an uploaded file ({exc.strerror or exc}).")]
            return
        if server is not None:
            yield from turn(remote_events(server, api_key, messages, files, model=model))
        else:
            assert agent is not None
            yield from turn(local_events(agent, messages))

    if server is not None:
        where = f"the server at {server}"
    else:
        assert agent is not None
        where = f"{agent.llm.name} with {', '.join(t.name for t in agent.tools) or 'no tools'}"
    chatbot = gr.Chatbot(label="mmreact", height="75vh", buttons=["copy"], placeholder="Drop images below and ask.")
    textbox = gr.MultimodalTextbox(file_types=["image"], file_count="multiple", placeholder="Ask about the images...")
    return gr.ChatInterface(respond, multimodal=True, chatbot=chatbot, textbox=textbox, title=TITLE,
                            description=f"{DESCRIPTION} Running: {where}.", analytics_enabled=False,
                            api_name="chat", fill_height=True)


#: no web fonts: the page renders offline with the system's fonts
def offline_theme() -> Any:
    import gradio as gr

    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "Consolas", "monospace"])


def launch(*, llm: str | None = None, tools: str | None = None, server: str | None = None, api_key: str | None = None,
           port: int = 7860, max_steps: int = 8, block: bool = True) -> Any:
    """Build and serve the demo on ``127.0.0.1:port`` (the ``mmreact demo`` command)."""
    from ..tools.registry import parse_tool_list

    agent = None if server else Agent(llm=llm, tools=parse_tool_list(tools), max_steps=max_steps)
    if agent is not None:
        agent.load()
    demo = build_demo(agent, server=server, api_key=api_key)
    demo.launch(server_name="127.0.0.1", server_port=port, share=False, ssr_mode=False, theme=offline_theme(),
                prevent_thread_lock=not block, quiet=not block, footer_links=["api"])
    return demo
