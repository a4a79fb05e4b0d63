"""What a question's run returns: the answer, the trace of every step, and the images by handle.

It lives apart from :mod:`mmreact.agent` so that the views, the server and the end-to-end systems
can name it without importing the ReAct loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .images import Image
from .trace import Trace

if TYPE_CHECKING:
    from PIL import Image as PILImage


@dataclass(frozen=True)
class Result:
    """What :meth:`Agent.run` returns: the answer (``None`` if the run stopped without one),
    the full trace, and the images by handle."""

    answer: str | None
    trace: Trace
    images: dict[str, Image] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.trace.status == "answered"

    @property
    def status(self) -> str:
        return self.trace.status

    @property
    def message(self) -> str | None:
        return self.trace.message

    def __str__(self) -> str:
        return self.answer if self.answer is not None else f"[{self.trace.status}] {self.trace.message}"

    def annotated(self, handle: str | None = None, *, grounding: bool = False) -> PILImage.Image:
        """Image ``handle`` (default: the first) as a ``PIL.Image`` with this run's boxes drawn;
        ``grounding=True`` draws only the boxes that support the answer's facts, each labelled with
        its fact (see :mod:`mmreact.grounding`)."""
        from .views.boxes import annotate_result
        return annotate_result(self, handle, grounding=grounding)

    def _repr_html_(self) -> str:
        from .views.notebook import result_html
        return result_html(self)
