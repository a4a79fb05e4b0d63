"""Constrained decoding for the transformers backend: which tokens may come next.

A :class:`Constraint` is made per reply from a language (a :class:`~mmreact.llms.grammar.StepGrammar`
or a :class:`~mmreact.llms.formats.TextFormat`); the decoder asks it for the allowed tokens before
each choice and tells it the token chosen. Two engines sit behind it:

* ``"llguidance"`` (preferred): `llguidance <https://github.com/guidance-ai/llguidance>`_ compiles
  the language's regular expression (``language.regex``, the very pattern ``language.accepts``
  matches with) for the model's tokenizer and computes an exact token mask at the byte level
  (tokens that split a UTF-8 character included; special tokens other than end-of-text never),
  in well under a millisecond per token. It needs a fast (Rust) tokenizer; the tokenizer's index
  is built once per model (about a second for a 49k vocabulary). The regex rather than the GBNF:
  llguidance's GBNF reader rejects some GBNF that llama.cpp takes (a repetition of a repetition,
  raw control characters in literals), while the regular expressions of all of those, and of
  every language the tests build, compile in llguidance.
* ``"regex"`` (the fallback when llguidance is not installed, cannot read the tokenizer (not a
  fast one, or a decoder it does not know, such as a bare SentencePiece ``Metaspace`` one), or
  cannot take a pattern): the same regular expression, checked character by character
  with ``regex`` partial matching over the surface text of each token (:class:`TokenTexts`). It
  walks candidate tokens from the highest score down and keeps the first ``keep`` that keep the
  reply a prefix of the language (1 when greedy, so greedy decoding is exact; 40 when sampling).
  Tokens that decode to a partial UTF-8 character and special tokens are never chosen.

Both accept exactly the strings ``language.accepts`` accepts (``tests/test_llm_hf.py`` checks this
string by string, token by token, as ``tests/test_llm_local.py`` does for llama.cpp's GBNF engine).
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any, Protocol

from .formats import TextFormat
from .grammar import StepGrammar

Language = StepGrammar | TextFormat
log = logging.getLogger(__name__)


class Constraint(Protocol):
    """The allowed next tokens of one reply (batch size 1)."""

    engine: str

    def mask(self, scores: Any) -> Any:
        """``scores`` (1-D, one per vocabulary entry) with every disallowed token at ``-inf``."""

    def accept(self, token: int) -> None:
        """Record the token chosen (an allowed one)."""

    def finished(self) -> bool:
        """Whether nothing but end-of-text can follow (the decoder then stops without asking)."""

    def text(self, ids: list[int]) -> str:
        """The reply text of ``ids`` exactly as the constraint read it (a partial last character dropped)."""


# -- llguidance ------------------------------------------------------------------------------
class LLGuidanceConstraint:
    """A reply under an ``llguidance.LLMatcher`` (see the module docstring)."""

    engine = "llguidance"

    def __init__(self, matcher: Any, tokenizer: Any) -> None:
        import numpy as np

        self.matcher = matcher
        self.tokenizer = tokenizer
        self.words = np.zeros((tokenizer.vocab_size + 31) // 32, dtype=np.int32)

    def mask(self, scores: Any) -> Any:
        import numpy as np
        import torch

        self.matcher.unsafe_compute_mask_ptr(self.words.ctypes.data, self.words.nbytes)
        if self.matcher.is_error():
            raise RuntimeError(f"the grammar engine failed: {self.matcher.get_error()}")
        bits = np.unpackbits(self.words.view(np.uint8), bitorder="little")
        n = scores.shape[-1]
        if bits.shape[0] < n:
            bits = np.concatenate([bits, np.zeros(n - bits.shape[0], dtype=np.uint8)])
        allowed = torch.from_numpy(bits[:n].astype(bool)).to(scores.device)
        return scores.masked_fill(~allowed, float("-inf"))

    def accept(self, token: int) -> None:
        if not self.matcher.consume_token(token):
            raise RuntimeError(f"the grammar engine refused token {token}: {self.matcher.get_error()}")

    def finished(self) -> bool:
        return bool(self.matcher.is_stopped())

    def text(self, ids: list[int]) -> str:
        return bytes(self.tokenizer.decode_bytes(ids)).decode("utf-8", errors="ignore")


# -- the hand-written fallback ---------------------------------------------------------------
class TokenTexts:
    """The surface text of every token id of a tokenizer (computed once per tokenizer)."""

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        size = max(vocab_size, len(tokenizer))
        anchor = tokenizer.encode("a", add_special_tokens=False)[-1:]
        anchor_text = tokenizer.decode(anchor)
        # Decoding after an anchor token keeps SentencePiece's leading spaces.
        decoded = tokenizer.batch_decode([anchor + [i] for i in range(len(tokenizer))],
                                         skip_special_tokens=False, clean_up_tokenization_spaces=False)
        special = set(tokenizer.all_special_ids)
        special |= {i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if t.special}
        texts = [""] * size
        for i, full in enumerate(decoded):
            if i in special or not full.startswith(anchor_text):
                continue
            piece = full[len(anchor_text):]
            if "\ufffd" not in piece:
                texts[i] = piece
        self.texts = texts

    def join(self, ids: list[int]) -> str:
        return "".join(self.texts[i] if i < len(self.texts) else "" for i in ids)


class RegexConstraint:
    """The hand-written fallback (see the module docstring)."""

    engine = "regex"

    def __init__(self, language: Language, texts: TokenTexts, eos_ids: set[int], keep: int = 1) -> None:
        self.language = language
        self.texts = texts
        self.eos_ids = eos_ids
        self.keep = keep
        self.ids: list[int] = []

    def allowed(self, text: str, order: list[int]) -> list[int]:
        """The first ``keep`` ids in ``order`` that keep ``text`` inside the language."""
        g = self.language
        out: list[int] = []
        complete = g.accepts(text)
        first_ok: dict[str, bool] = {}
        texts = self.texts.texts
        for i in order:
            if i in self.eos_ids:
                if complete:
                    out.append(i)
            else:
                piece = texts[i] if i < len(texts) else ""
                if not piece:
                    continue
                ok = first_ok.get(piece[0])
                if ok is None:
                    ok = first_ok[piece[0]] = g.accepts_prefix(text + piece[0])
                if ok and (len(piece) == 1 or g.accepts_prefix(text + piece)):
                    out.append(i)
            if len(out) >= self.keep:
                break
        return out

    def mask(self, scores: Any) -> Any:
        import torch

        text = self.texts.join(self.ids)
        top = torch.topk(scores, min(64, scores.shape[-1])).indices.tolist()
        ids = self.allowed(text, top)
        if len(ids) < self.keep:
            ids = self.allowed(text, torch.argsort(scores, descending=True).tolist())
        if not ids:  # a dead end (cannot happen with a vocabulary that has single characters)
            ids = sorted(self.eos_ids)
        out = torch.full_like(scores, float("-inf"))
        out[ids] = scores[ids]
        return out

    def accept(self, token: int) -> None:
        self.ids.append(token)

    def finished(self) -> bool:
        return False

    def text(self, ids: list[int]) -> str:
        return self.texts.join(ids)


# -- choosing the engine ---------------------------------------------------------------------
class Constraints:
    """Makes the constraint of each reply for one model's tokenizer (built lazily, kept per model).

    Args:
        tokenizer: the model's transformers tokenizer.
        vocab_size: the model's output size (may exceed the tokenizer's, for padding).
        eos_ids: the tokens that end a reply.
        engine: ``"auto"`` (llguidance when it can take the tokenizer and the grammar, else the
            regex fallback), ``"llguidance"`` or ``"regex"``.
    """

    def __init__(self, tokenizer: Any, vocab_size: int, eos_ids: set[int], engine: str = "auto") -> None:
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.eos_ids = eos_ids
        self.engine = engine
        self._llg: Any = None
        self._llg_tried = False
        self._texts: TokenTexts | None = None

    def llguidance_tokenizer(self) -> Any:
        """llguidance's index of the tokenizer, or ``None`` when llguidance cannot be used."""
        if self.engine == "regex":
            return None
        if not self._llg_tried:
            self._llg_tried = True
            if importlib.util.find_spec("llguidance") is None:
                log.info("llguidance is not installed: the transformers backend uses its regex fallback")
            else:
                try:
                    import llguidance.hf

                    self._llg = llguidance.hf.from_tokenizer(
                        self.tokenizer, n_vocab=max(self.vocab_size, len(self.tokenizer)),
                        eos_token=sorted(self.eos_ids) or None)
                except Exception as exc:  # noqa: BLE001 - e.g. a slow tokenizer, a decoder llguidance does not know
                    log.info("llguidance cannot read this tokenizer (%s): using the regex fallback", exc)
        return self._llg

    def texts(self) -> TokenTexts:
        if self._texts is None:
            self._texts = TokenTexts(self.tokenizer, self.vocab_size)
        return self._texts

    def prepare(self) -> None:
        """Build what the preferred engine needs now (model loading calls this)."""
        if self.llguidance_tokenizer() is None:
            self.texts()

    def make(self, language: Language, sample: bool = False) -> Constraint:
        """The constraint of one reply in ``language``."""
        lt = self.llguidance_tokenizer()
        if lt is not None:
            import llguidance

            try:
                matcher = llguidance.LLMatcher(lt, llguidance.LLMatcher.grammar_from_regex(language.regex),
                                               log_level=0)
                error = matcher.get_error() if matcher.is_error() else ""
            except Exception as exc:  # noqa: BLE001 - the fallback takes any pattern the regex module compiles
                error = str(exc) or type(exc).__name__
            if not error:
                return LLGuidanceConstraint(matcher, lt)
            if self.engine == "llguidance":
                raise ValueError(f"llguidance cannot take this grammar: {error}")
            log.info("llguidance cannot take this grammar (%s): using the regex fallback", error)
        elif self.engine == "llguidance":
            raise ValueError("llguidance is not available for this model (not installed, or not a fast tokenizer)")
        return RegexConstraint(language, self.texts(), self.eos_ids, keep=40 if sample else 1)
