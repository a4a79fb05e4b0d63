"""Decoding for the transformers backend: a key/value cache kept across replies, and the token loop.

:class:`PrefixCache` holds one model's last sequence: its token ids and a transformers
``DynamicCache`` of their keys and values. The next request finds the longest common prefix with
it, crops the cache there and feeds only the tokens after it, as llama.cpp's prefix cache does: an
agent's later step shares the system prompt and the earlier turns with the one before, so only the
new observation (and the re-read reply) goes through the model. Within a reply each new token is
fed once. One prompt pass per reply, then one token per forward.

:func:`decode` is the loop: mask (the :mod:`._hf_constrain` constraint), choose (greedy, or
llama-cpp-python's default sampling chain: top-k 40, top-p 0.95, min-p 0.05, then the
temperature, applied with transformers' own logits warpers), stream, stop. The caller holds the model's lock: a cache belongs
to one model and one thread at a time.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._hf_constrain import Constraint


class PrefixCache:
    """The key/value cache of one model's last sequence (batch size 1).

    Args:
        model: a transformers causal LM.
        enabled: keep the cache; ``False`` runs every forward pass over the whole sequence
            without any cache (slow: a reference for tests).
    """

    def __init__(self, model: Any, enabled: bool = True) -> None:
        self.model = model
        self.enabled = enabled
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._keep_arg = next((n for n in ("logits_to_keep", "num_logits_to_keep") if n in params), None)
        self.ids: list[int] = []  # the tokens whose keys and values are in the cache
        self.cache: Any = None

    def clear(self) -> None:
        self.ids, self.cache = [], None

    def _new_cache(self) -> Any:
        from transformers import DynamicCache

        try:
            return DynamicCache(config=self.model.config)
        except TypeError:  # transformers before 4.56
            return DynamicCache()

    def _forward(self, new: list[int], cache: Any) -> Any:
        import torch

        kwargs: dict[str, Any] = {"use_cache": cache is not None}
        if cache is not None:
            kwargs[self._cache_arg] = cache
        if self._keep_arg:
            kwargs[self._keep_arg] = 1
        ids = torch.tensor([new], dtype=torch.long, device=self.model.device)
        return self.model(input_ids=ids, **kwargs).logits[0, -1].float()

    def logits(self, ids: list[int]) -> tuple[Any, int]:
        """Next-token logits after ``ids`` and how many of ``ids`` came from the cache.

        Only the tokens after the longest prefix already in the cache are fed (at least one, for
        the logits); the cache then holds ``ids``. On any error the cache is dropped.
        """
        if not ids:
            raise ValueError("an empty prompt")
        if not self.enabled:
            self.ids = list(ids)
            return self._forward(ids, None), 0
        have = self.ids
        n = 0
        limit = min(len(have), len(ids) - 1)
        while n < limit and have[n] == ids[n]:
            n += 1
        cache = self.cache
        if cache is None or n == 0:
            cache, n = self._new_cache(), 0
        elif n < len(have):
            try:
                cache.crop(n - len(have))  # a negative count: tokens to remove (transformers 4.x and 5.x)
            except (RuntimeError, ValueError):  # e.g. a sliding-window layer past its window: start afresh
                cache, n = self._new_cache(), 0
        self.clear()  # until the pass succeeds
        out = self._forward(ids[n:], cache)
        self.ids, self.cache = list(ids), cache
        return out, n

    def extend(self, token: int) -> Any:
        """Next-token logits after the cached sequence and ``token`` (fed alone)."""
        ids, cache = self.ids, self.cache
        if not self.enabled:
            ids.append(token)
            return self._forward(ids, None)
        if cache is None:
            raise RuntimeError("nothing to extend: no sequence in the cache")
        self.clear()  # until the pass succeeds
        out = self._forward([token], cache)
        ids.append(token)
        self.ids, self.cache = ids, cache
        return out


@dataclass
class Decoded:
    """What :func:`decode` returns."""

    text: str
    ids: list[int]
    cached: int  # prompt tokens reused from the previous request
    finish: str  # "eos" | "grammar" (nothing else could follow) | "stop" | "length" | "dead end"


def _sampler(temperature: float) -> Callable[[Any], int] | None:
    if temperature <= 0:
        return None
    import torch
    from transformers import (
        LogitsProcessorList,
        MinPLogitsWarper,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    # llama-cpp-python's order: the truncations on the raw distribution, then the temperature.
    warpers = LogitsProcessorList([TopKLogitsWarper(40), TopPLogitsWarper(0.95), MinPLogitsWarper(0.05),
                                   TemperatureLogitsWarper(temperature)])
    none = torch.zeros((1, 0), dtype=torch.long)

    def sample(scores: Any) -> int:
        probs = torch.softmax(warpers(none, scores[None, :]), dim=-1)
        return int(torch.multinomial(probs[0], 1).item())

    return sample


def decode(cache: PrefixCache, prompt: list[int], *, max_new_tokens: int, eos_ids: set[int],
           constraint: Constraint | None = None, text: Callable[[list[int]], str],
           temperature: float = 0.0, stop_when: Callable[[str], Any] | None = None,
           stops: tuple[str, ...] = (), on_text: Callable[[str], None] | None = None) -> Decoded:
    """Generate one reply after ``prompt`` (token ids, prefill included).

    ``text(ids)`` renders the reply so far (the constraint's own reading when there is one);
    ``stop_when(text)`` and the ``stops`` strings end it early (the reply is cut before a stop
    string); ``on_text`` gets each new piece, holding back text that may begin a stop string.
    """
    import torch

    sample = _sampler(temperature)
    out: list[int] = []
    sent = ""
    finish = "length"
    try:
        with torch.inference_mode():
            scores, cached = cache.logits(prompt)
            while len(out) < max_new_tokens:
                if constraint is not None:
                    scores = constraint.mask(scores)
                    if not bool(torch.isfinite(scores).any()):  # a dead end: no token can continue the reply
                        finish = "dead end"
                        break
                token = int(torch.argmax(scores).item()) if sample is None else sample(scores)
                if token in eos_ids:
                    finish = "eos"
                    break
                if constraint is not None:
                    constraint.accept(token)
                out.append(token)
                reply = text(out)
                if stops:
                    reply, held, stopped = _cut(reply, stops)
                    if stopped:
                        finish = "stop"
                else:
                    held, stopped = 0, False
                shown = reply[:len(reply) - held]
                if on_text is not None and len(shown) > len(sent) and shown.startswith(sent):
                    on_text(shown[len(sent):])
                    sent = shown
                if stopped:
                    break
                if stop_when is not None and stop_when(reply):
                    finish = "stop"
                    break
                if constraint is not None and constraint.finished():
                    finish = "grammar"
                    break
                if len(out) >= max_new_tokens:
                    break
                scores = cache.extend(token)
    except BaseException:
        cache.clear()
        raise
    reply = text(out)
    if stops:
        reply = _cut(reply, stops)[0]
    if on_text is not None and len(reply) > len(sent) and reply.startswith(sent):
        on_text(reply[len(sent):])  # text held back in case it began a stop string
    return Decoded(reply, out, cached, finish)


def _cut(text: str, stops: tuple[str, ...]) -> tuple[str, int, bool]:
    """(``text`` cut before the first stop string, characters at its end that may begin one, stopped)."""
    hits = [text.find(s) for s in stops if s and s in text]
    if hits:
        return text[:min(hits)], 0, True
    held = max((k for s in stops for k in range(min(len(s) - 1, len(text)), 0, -1) if text.endswith(s[:k])),
               default=0)
    return text, held, False
