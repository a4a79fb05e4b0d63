"""Serve the agent: an OpenAI-compatible HTTP endpoint, a web demo, and a Ray Serve app.

    from mmreact import Agent
    from mmreact.serve import ServeConfig, create_app, run_server

    app = create_app(Agent(tools=["ocr"]), ServeConfig(port=8000))
    run_server(app, ServeConfig(port=8000))

Needs the ``serve`` extra (FastAPI, uvicorn, sse-starlette); the demo needs ``demo`` (Gradio),
the Ray app ``ray`` (Ray Serve). Nothing heavy is imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import ServeConfig

if TYPE_CHECKING:
    from .app import create_app
    from .server import run_server

__all__ = ["ServeConfig", "create_app", "run_server"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "run_server":
        from .server import run_server

        return run_server
    raise AttributeError(name)
