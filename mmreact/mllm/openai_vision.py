"""A hosted (or local OpenAI-compatible) vision model as an end-to-end system.

Spec strings: ``openai-vision:MODEL`` (key from ``OPENAI_API_KEY``, URL from ``OPENAI_BASE_URL`` or
api.openai.com) and ``openai-vision:MODEL@BASE_URL`` for an OpenAI-compatible server (vLLM, llama.cpp,
Ollama ...) that serves a vision model.

Decisions:

* One chat-completions request per question: one user message whose content is the images as
  ``image_url`` parts with base64 PNG ``data:`` URLs (local images never need hosting), then the
  question as a ``text`` part. With several images each is preceded by a ``text`` part naming its
  handle (``image_1:``), so questions can refer to images the way the agent's do.
* Images wider or taller than ``max_side`` (2048 px, the most OpenAI's high-detail mode keeps) are
  scaled down before encoding; smaller images are sent as they are.
* Key checks, the SDK client, retries and the one-sentence error messages are the ``openai:`` LLM
  backend's (:class:`mmreact.llms.openai.OpenAILLM`), so both backends fail the same way: no key for
  api.openai.com is a :class:`ConfigError`; an unreachable server, a rejected key or an unknown
  model is an :class:`LLMError`.
* Solved examples (``examples=``, :mod:`mmreact.fewshot`) go before the question as completed
  turns: a user message (the example's images, each named ``example_1_image_1:``... when there are
  several, then its question) and an assistant message (its answer) per example.
* ``temperature=0`` so runs repeat as far as the server allows. If the server rejects
  ``max_tokens`` (newer OpenAI models), the request is repeated once with ``max_completion_tokens``.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError, LLMError
from ..images import Image
from ..llms.openai import OpenAILLM
from .base import EndToEndSystem, Generation

__all__ = ["OpenAIVision", "data_url"]


def data_url(image: Image, max_side: int = 2048) -> str:
    """``image`` as a ``data:image/png;base64,...`` URL, scaled down to at most ``max_side`` pixels."""
    pil = image.pil
    if max(pil.size) > max_side:
        pil = pil.copy()
        pil.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class OpenAIVision(EndToEndSystem):
    """An OpenAI vision chat model (``gpt-4o``, ``gpt-4o-mini`` ...) or a compatible server.

    Args:
        model: model name as the server knows it.
        base_url: server root ending in ``/v1``; ``None`` means ``OPENAI_BASE_URL`` or api.openai.com.
        api_key: ``None`` means ``OPENAI_API_KEY`` (or a placeholder for non-OpenAI servers).
        max_tokens: the most tokens one answer may have.
        detail: OpenAI's image ``detail`` (``"low"``, ``"high"``, ``"auto"``); ``None`` leaves it out.
        timeout: seconds per request, as in the ``openai:`` backend.
        max_retries: retries per request, as in the ``openai:`` backend.
        examples: solved examples shown before every question (:mod:`mmreact.fewshot`).
    """

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None, *,
                 max_tokens: int = 300, detail: str | None = None, timeout: float = 60.0,
                 max_retries: int = 2, max_side: int = 2048, examples: Any = None) -> None:
        if detail not in (None, "low", "high", "auto"):
            raise ConfigError(f"detail must be 'low', 'high' or 'auto', got {detail!r}.")
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise ConfigError(f"max_tokens must be a positive integer, got {max_tokens!r}.")
        url = base_url or os.environ.get("OPENAI_BASE_URL") or ""
        if not (api_key or os.environ.get("OPENAI_API_KEY")) and (not url or "api.openai.com" in url):
            raise ConfigError(
                "No OpenAI API key: set OPENAI_API_KEY, or give a base URL "
                "(openai-vision:MODEL@http://host:port/v1) for a local OpenAI-compatible server."
            )
        self._llm = OpenAILLM((model or "").strip() or _no_model(), base_url=base_url, api_key=api_key,
                              timeout=timeout, max_retries=max_retries, mode="text")
        self.model = self._llm.model
        self.base_url = self._llm.base_url
        self.max_tokens = max_tokens
        self.detail = detail
        self.max_side = max_side
        self.name = "openai-vision" + self._llm.name.removeprefix("openai")
        self._token_param = "max_tokens"
        self.use_examples(examples)

    @classmethod
    def from_spec(cls, spec: str, **options: Any) -> OpenAIVision:
        """``MODEL`` or ``MODEL@BASE_URL`` (the URL starts with http:// or https://)."""
        for marker in ("@http://", "@https://"):
            model, sep, rest = spec.partition(marker)
            if sep:
                return cls(model, base_url=marker[1:] + rest, **options)
        return cls(spec, **options)

    def _content(self, text: str, images: Sequence[Image], names: Sequence[str]) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = []
        for name, image in zip(names, images, strict=True):
            if len(images) > 1:
                content.append({"type": "text", "text": f"{name}:"})
            part: dict[str, Any] = {"url": data_url(image, self.max_side)}
            if self.detail is not None:
                part["detail"] = self.detail
            content.append({"type": "image_url", "image_url": part})
        content.append({"type": "text", "text": text})
        return content

    def messages(self, question: str, images: Sequence[Image]) -> list[dict[str, Any]]:
        """The chat messages for one question: the solved examples as user and assistant turns,
        then the question (images first, then its text)."""
        out: list[dict[str, Any]] = []
        for s in self.examples.shown if self.examples is not None else ():
            out.append({"role": "user", "content": self._content(s.example.question, s.images, s.handles)})
            out.append({"role": "assistant", "content": s.example.answer})
        names = [f"image_{i}" for i in range(1, len(images) + 1)]
        out.append({"role": "user", "content": self._content(question, images, names)})
        return out

    def generate(self, question: str, images: Sequence[Image]) -> Generation:
        import openai

        params: dict[str, Any] = {"model": self.model, "messages": self.messages(question, images),
                                  "temperature": 0}
        for attempt in range(2):
            params.pop("max_tokens", None)
            params[self._token_param] = self.max_tokens
            try:
                resp = self._llm.client().chat.completions.create(**params)
                break
            except openai.BadRequestError as exc:
                if attempt or self._token_param != "max_tokens" or "max_tokens" not in str(exc):
                    raise self._llm._error(exc) from None
                self._token_param = "max_completion_tokens"
            except openai.OpenAIError as exc:
                raise self._llm._error(exc) from None
        if not resp.choices:
            raise LLMError(f"The server at {self.base_url} returned no choices for model '{self.model}'.")
        usage = resp.usage
        return Generation(
            text=resp.choices[0].message.content or "",
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            completion_tokens=getattr(usage, "completion_tokens", None),
        )


def _no_model() -> str:
    raise ConfigError("The openai-vision backend needs a model name, e.g. openai-vision:gpt-4o-mini.")
