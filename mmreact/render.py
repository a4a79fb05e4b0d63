"""The one place where questions and observations become prompt text.

Observation text comes from experts (OCR above all) and is untrusted: it is wrapped in
``<observation>`` blocks, and anything in it that looks like those delimiters is neutralised so
an image cannot close the block and speak as the engine.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .images import ImageTable
from .trace import CallRecord

MAX_OBSERVATION_CHARS = 6000
_DELIM = re.compile(r"<\s*/?\s*observation", re.IGNORECASE)


def _neutralise(text: str) -> str:
    return _DELIM.sub(lambda m: m.group(0).replace("<", "‹"), text)


def question_text(question: str, new_handles: Sequence[str], images: ImageTable) -> str:
    lines = []
    if new_handles:
        described = ", ".join(
            f"{h} ({img.width}x{img.height})" for h in new_handles if (img := images.get(h)) is not None
        )
        lines.append(f"Images: {described}")
    elif len(images):
        lines.append(f"Images so far: {', '.join(images.handles)}")
    lines.append(f"Question: {question}")
    return "\n".join(lines)


def observation_block(record: CallRecord) -> str:
    text = record.text
    if len(text) > MAX_OBSERVATION_CHARS:
        cut = len(text) - MAX_OBSERVATION_CHARS
        text = text[:MAX_OBSERVATION_CHARS] + f"\n[... {cut} more characters left out]"
    note = " (same call as before; earlier result repeated)" if record.reused == "repeat" else ""
    return f'<observation call="{record.call}"{note}>\n{_neutralise(text)}\n</observation>'


def observations_text(records: Sequence[CallRecord]) -> str:
    return "\n".join(observation_block(r) for r in records)


def retry_text(error: str) -> str:
    return (
        f"Your reply could not be used: {error}\n"
        "Reply with 'Thought: ...' then one or more 'Action: tool_name(image_1)' lines, "
        "or with 'Final Answer: ...'."
    )
