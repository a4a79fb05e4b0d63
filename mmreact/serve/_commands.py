"""``mmreact serve`` and ``mmreact demo``: user mistakes raise :class:`~mmreact.errors.MMReactError`
(the CLI prints one line and exits 2)."""

from __future__ import annotations

import importlib.util
import logging
import sys

from ..errors import ConfigError
from ..images import MB
from .config import ServeConfig


def need(extra: str, modules: tuple[str, ...], what: str) -> None:
    """Raise a one-sentence ConfigError when an optional dependency is missing."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"{what} needs the '{extra}' extra: pip install 'mmreact[{extra}]' "
                          f"(missing: {', '.join(missing)}).")


def _log_to_stderr() -> None:
    logger = logging.getLogger("mmreact.serve")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("mmreact serve: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def serve_command(*, host: str, port: int, llm: str | None, tools: str | None, api_keys: list[str], max_steps: int,
                  max_concurrency: int, max_queue: int, model_name: str, timeout: float, max_body_mb: float,
                  allow_image_urls: bool,
                  insecure: bool) -> None:
    need("serve", ("fastapi", "uvicorn", "sse_starlette"), "mmreact serve")
    from ..agent import Agent
    from ..tools.registry import parse_tool_list
    from .app import create_app
    from .server import bind, run_server

    keys = tuple(k.strip() for key in api_keys for k in key.split(",") if k.strip())
    config = ServeConfig(host=host, port=port, model_name=model_name, api_keys=keys, insecure=insecure,
                         max_concurrency=max_concurrency, max_queue=max_queue, request_timeout=timeout,
                         max_body_bytes=int(max_body_mb * MB),
                         allow_image_urls=allow_image_urls)
    sock = bind(host, port)  # a taken port is one sentence before anything loads or says it serves
    agent = Agent(llm=llm, tools=parse_tool_list(tools), max_steps=max_steps)
    _log_to_stderr()
    shown = f"[{host}]" if ":" in host else host
    logging.getLogger("mmreact.serve").info(
        "http://%s:%d/v1 serves model '%s' (LLM %s; tools %s; %s)", shown, port, model_name, agent.llm.name,
        ", ".join(t.name for t in agent.tools) or "none", "API key required" if keys else "no API key")
    run_server(create_app(agent, config), config, sock=sock)


def demo_command(*, llm: str | None, tools: str | None, server: str | None, api_key: str | None, port: int,
                 max_steps: int) -> None:
    need("demo", ("gradio",), "mmreact demo")
    from .demo import launch

    launch(llm=llm, tools=tools, server=server, api_key=api_key, port=port, max_steps=max_steps)
