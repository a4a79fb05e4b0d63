"""An OpenAI chat-completions request, checked, as one agent question.

How a conversation maps to the agent (each request gets a fresh :class:`~mmreact.Chat`):

- Consecutive user messages count as one turn (some clients send each upload as its own message).
- Images from every user message, in order, become ``image_1..N`` (identical pixels share one
  handle, as in a chat session). A client that resends the whole history therefore gets the same
  handles on every turn; an expert call replayed on an earlier image is answered by the result
  cache for cacheable tools.
- The question is the text of the last user message. Earlier user and assistant messages (the
  last ``history_turns`` of them, each cut to ``history_chars``) are replayed as context in front
  of it, each user message followed by the handles of the images it carried:
  ``User (image_1): ...`` / ``Assistant: ...``. A single-message request is just its question.
- ``system`` and ``developer`` messages are ignored: the agent's own system prompt carries the
  tool protocol. ``tool`` messages and the ``tools``/``functions`` parameters are refused (400):
  the agent runs its own tools, and steps are never sent to clients as ``tool_calls``.
- Accepted and ignored: sampling parameters (``temperature``, ``top_p``, ``seed``, ``stop``,
  ``max_tokens`` ...), ``user``, ``metadata``. Refused: ``n`` > 1, ``logprobs``, a
  ``response_format`` other than text, audio output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._errors import APIError, bad_request

_IGNORED_ROLES = {"system", "developer"}
#: The question (the last user message's text) may not be longer than this.
MAX_QUESTION_CHARS = 20_000


def _clean(text: str) -> str:
    """``text`` with lone surrogates (valid in JSON, not in UTF-8) replaced, so it can be sent on."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


@dataclass(frozen=True)
class ImagePart:
    """One ``image_url`` content part: where it was (``label``) and its URL."""

    label: str
    url: str
    turn: int  # index of the turn (consecutive user messages are one turn) that carried it


@dataclass(frozen=True)
class Turn:
    """One user turn (consecutive user messages together) or assistant message."""

    role: str
    text: str
    index: int
    message: int  # index of its last message in the request


@dataclass(frozen=True)
class ChatRequest:
    """What the agent needs from a request."""

    model: str
    question: str
    question_turn: int
    images: tuple[ImagePart, ...]
    history: tuple[Turn, ...] = ()
    stream: bool = False
    include_usage: bool = False


def _text_of(content: Any, where: str, *, role: str, images: list[ImagePart], turn: int) -> str:
    """The text of a message's content; ``image_url`` parts of user messages go to ``images``."""
    if content is None:
        return ""
    if isinstance(content, str):
        return _clean(content)
    if not isinstance(content, list):
        raise bad_request(f"{where}.content must be a string or a list of content parts.", param=f"{where}.content")
    texts: list[str] = []
    for j, part in enumerate(content):
        label = f"{where}.content[{j}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise bad_request(f"{label} must be an object with a 'type'.", param=label)
        kind = part["type"]
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise bad_request(f"{label}.text must be a string.", param=f"{label}.text")
            texts.append(_clean(text))
        elif kind == "image_url" and role == "user":
            spec = part.get("image_url")
            url = spec.get("url") if isinstance(spec, dict) else spec
            if not isinstance(url, str) or not url:
                raise bad_request(f"{label}.image_url.url must be a non-empty string.", param=f"{label}.image_url")
            images.append(ImagePart(label=label, url=url, turn=turn))
        elif kind in ("image_url", "refusal"):
            continue  # images in assistant messages are not the user's; refusals carry no context
        else:
            raise bad_request(f"{label} has type '{kind[:40]}', which this server does not accept "
                              "(use 'text' and 'image_url').", param=label, code="unsupported_content")
    return "\n".join(t for t in texts if t.strip())


def _check_params(body: dict[str, Any]) -> None:
    n = body.get("n")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n != 1):
        raise bad_request("Only n=1 is supported: the agent gives one answer per request.", param="n",
                          code="unsupported_parameter")
    for name in ("tools", "functions"):
        if body.get(name):
            raise bad_request(f"'{name}' is not supported: the agent calls its own vision tools.", param=name,
                              code="unsupported_parameter")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise bad_request("logprobs are not supported.", param="logprobs", code="unsupported_parameter")
    fmt = body.get("response_format")
    if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise bad_request("Only response_format {'type': 'text'} is supported.", param="response_format",
                          code="unsupported_parameter")
    modalities = body.get("modalities")
    if modalities is not None and (not isinstance(modalities, list) or set(modalities) - {"text"}):
        raise bad_request("Only text output is supported.", param="modalities", code="unsupported_parameter")
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise bad_request("stream_options must be an object.", param="stream_options")


def parse_request(body: Any, *, model_name: str, max_images: int) -> ChatRequest:
    """Check a decoded JSON body; raise :class:`APIError` (400/404) with OpenAI's fields."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("'model' is required (a string).", param="model")
    if model != model_name:
        raise APIError(404, f"The model '{model[:100]}' does not exist; this server serves '{model_name}'.",
                       param="model", code="model_not_found")
    _check_params(body)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request("'stream' must be true or false.", param="stream")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty list.", param="messages")
    images: list[ImagePart] = []
    turns: list[Turn] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad_request(f"{where} must be an object.", param=where)
        role = message.get("role")
        if role in _IGNORED_ROLES:
            continue
        if role == "tool" or role == "function":
            raise bad_request(f"{where} has role '{role}'; this server runs its own tools and takes no tool results.",
                              param=f"{where}.role", code="unsupported_parameter")
        if role not in ("user", "assistant"):
            raise bad_request(f"{where}.role must be system, developer, user or assistant.", param=f"{where}.role")
        merge = bool(turns) and role == "user" and turns[-1].role == "user"
        index = len(turns) - 1 if merge else len(turns)
        text = _text_of(message.get("content"), where, role=role, images=images, turn=index)
        if merge:
            joined = "\n".join(t for t in (turns[-1].text, text) if t.strip())
            turns[-1] = Turn(role="user", text=joined, index=index, message=i)
        elif role == "user" or text.strip():  # an assistant message with no text adds nothing
            turns.append(Turn(role=role, text=text, index=index, message=i))
    if not turns or turns[-1].role != "user":
        raise bad_request("The last message must be a user message with the question.", param="messages")
    last = turns[-1]
    if not last.text.strip():
        raise bad_request(f"messages[{last.message}] has no text; ask a question about the image(s).",
                          param=f"messages[{last.message}].content")
    if len(last.text) > MAX_QUESTION_CHARS:
        raise bad_request(f"The question is {len(last.text):,} characters; at most {MAX_QUESTION_CHARS:,} are allowed.",
                          param=f"messages[{last.message}].content", code="question_too_long")
    if len(images) > max_images:
        raise bad_request(f"The request carries {len(images)} images; at most {max_images} are allowed.",
                          param="messages", code="too_many_images")
    stream_options = body.get("stream_options") or {}
    return ChatRequest(
        model=model, question=last.text, question_turn=last.index, images=tuple(images),
        history=tuple(turns[:-1]), stream=stream, include_usage=bool(stream and stream_options.get("include_usage")),
    )


def compose_question(request: ChatRequest, handles: Sequence[str], *, turns: int, chars: int) -> str:
    """The question for the agent: earlier turns as context (see the module doc), then the question.

    ``handles[k]`` is the handle the k-th image part got.
    """
    by_turn: dict[int, list[str]] = {}
    for part, handle in zip(request.images, handles):
        found = by_turn.setdefault(part.turn, [])
        if handle not in found:
            found.append(handle)
    history = list(request.history)[-turns:] if turns else []
    if not history:
        return request.question
    lines = ["Earlier in this conversation:"]
    for turn in history:
        text = " ".join(turn.text.split())
        if len(text) > chars:
            text = text[: chars - 3] + "..."
        if turn.role == "user":
            attached = by_turn.get(turn.index)
            lines.append(f"User ({', '.join(attached)}): {text}" if attached else f"User: {text}")
        else:
            lines.append(f"Assistant: {text}")
    attached = by_turn.get(request.question_turn)
    lines.append(f"Now the user asks ({', '.join(attached)}):" if attached else "Now the user asks:")
    lines.append(request.question)
    return "\n".join(lines)
