"""A scripted LLM that replays a list of replies: for tests, docs and demos."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import ConfigError, LLMError
from .base import LLM, Completion, LLMRequest

Reply = str | Callable[[LLMRequest], str]


class ScriptedLLM(LLM):
    """Replays ``replies`` in order. A reply may be a string or a function of the request.

    When the script runs out, ``complete`` raises :class:`LLMError` (or, with ``repeat_last``,
    keeps returning the last reply). ``requests`` records every request received (not with
    ``record=False``: a request holds its ``on_text`` callback, and with it whatever the caller
    keeps, e.g. a server's request body). :meth:`replay` starts the same script afresh.
    """

    def __init__(self, replies: Sequence[Reply], *, repeat_last: bool = False, name: str = "scripted",
                 record: bool = True) -> None:
        if isinstance(replies, str) or not all(isinstance(r, str) or callable(r) for r in replies):
            raise ConfigError("ScriptedLLM needs a list of reply strings (or functions of the request).")
        self.replies = list(replies)
        self.repeat_last = repeat_last
        self.name = name
        self.requests: list[LLMRequest] = []
        self.record = record
        self._i = 0
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: str | Path) -> ScriptedLLM:
        """Load a JSON file holding a list of reply strings."""
        p = Path(path).expanduser()
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"Script file not found: {p}") from None
        except IsADirectoryError:
            raise ConfigError(f"Script path {p} is a directory, not a JSON file.") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"Cannot read script file {p}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"Script file {p} is not valid JSON (line {exc.lineno}: {exc.msg}).") from None
        if not isinstance(data, list) or not data or not all(isinstance(r, str) for r in data):
            raise ConfigError(f"Script file {p} must hold a non-empty JSON list of reply strings.")
        return cls(data, name=f"scripted:{p.name}")

    def complete(self, request: LLMRequest) -> Completion:
        with self._lock:
            if self.record:
                self.requests.append(request)
            if self._i >= len(self.replies):
                if not (self.repeat_last and self.replies):
                    raise LLMError(f"The scripted LLM ran out of replies after {len(self.replies)}.")
                reply = self.replies[-1]
            else:
                reply = self.replies[self._i]
                self._i += 1
        text = reply(request) if callable(reply) else reply
        if request.on_text is not None:
            request.on_text(text)
        return Completion(text=text)

    def replay(self) -> ScriptedLLM:
        """The same script from its first reply, recording nothing: what a server runs for each
        request (a stateless model server answers every conversation from the start)."""
        return ScriptedLLM(self.replies, repeat_last=self.repeat_last, name=self.name, record=False)

    def reset(self) -> None:
        with self._lock:
            self._i = 0
            self.requests.clear()
