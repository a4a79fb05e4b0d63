"""Visual instruction data, LLaVA-style, from the experts' outputs (``mmreact datagen``).

The experts describe each image as text (captions, objects with normalised boxes, OCR text); a
text-only LLM, prompted with a system message and few-shot examples, writes conversations,
detailed descriptions and reasoning questions from it; filters drop what is malformed, a
placeholder, an echo, in another language, too long, leaked, copied, unrelated, unsupported by
the context, hallucinated, miscounted, refused, repeated or generic; the accepted records export
as LLaVA, ShareGPT or OpenAI training files. Runs resume, keyed on each image's pixels; the same
stages run locally or on Ray Data.

    from mmreact.datagen import generate, export
    summary = generate("photos/", "out/", kinds=["conversation", "detail"], llm="openai:gpt-4o-mini")
    export("out/", "llava")          # out/llava.json

Nothing heavy is imported until it is used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["generate", "refilter", "export", "make_templates", "summarize", "Store", "Record", "KINDS",
           "DatagenConfig", "RunSummary"]

_WHERE = {
    "generate": "run", "refilter": "run", "RunSummary": "run", "export": "exports", "make_templates": "templates",
    "summarize": "report", "Store": "_store", "Record": "records", "KINDS": "prompts", "DatagenConfig": "config",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'mmreact.datagen' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
