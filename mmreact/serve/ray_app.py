"""The same server on Ray Serve: scale past one machine.

Two kinds of deployment:

- ``MMReactIngress``: the FastAPI app of :func:`mmreact.serve.create_app` (late-bound with
  ``__serve_build_asgi_app__``, so each replica builds its own agent and app), autoscaled on
  ongoing requests. Its agent's LLM runs in the replica; its vision tools are remote. Admission is
  the app's, as in ``mmreact serve``: ``max_concurrency`` runs and ``max_queue`` waiting per replica,
  and the rest answered 429 with ``Retry-After``. For that the refused requests must reach the app:
  Ray may send a replica twice that many at once (``max_ongoing_requests``; a refusal takes
  milliseconds), and what Ray itself holds back beyond that is bounded too (``max_queued_requests``
  per proxy, answered 429 by Ray where it can say so, else 503). With Ray's default of sending only
  ``max_concurrency + max_queue``, every request past them waited in Ray's own unbounded queue.
- ``expert_<name>`` (:class:`ExpertServer`), one per vision expert, with its own resources
  (``num_gpus``) and replicas. ``@serve.batch`` gathers concurrent calls from every ingress
  replica and feeds them to the expert's ``run_batch`` (one forward pass per batch).

The agent calls an expert through :func:`remote_tool`: an ordinary mmreact tool with the expert's
name, description and arguments (so the planner's prompt and grammar are the same as in-process)
whose body calls the deployment. Results are cached in the ingress replica too (same cache key
as the local expert), so a replayed conversation costs no remote call.

Start it on one machine (one command; HTTP on 127.0.0.1:8000)::

    serve run mmreact.serve.ray_app:build_app tools=ocr llm=default

On a cluster: ``serve deploy examples/ray_serve.yaml`` (see that file).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import typing
from collections.abc import Sequence
from typing import Any

from ray import serve

from ..agent import Agent
from ..images import Image, load_image
from ..observation import Observation
from ..tools import Tool, tool
from .config import ServeConfig

#: Ingress settings a builder argument may set (all of :class:`ServeConfig` but host/port, which Ray owns)
_CONFIG_FIELDS = {f for f in ServeConfig.__dataclass_fields__ if f not in ("host", "port")}


def _resolve(name: str) -> Tool:
    from ..tools.registry import resolve_tools

    return resolve_tools([name])[0]


class ExpertServer:
    """One vision expert as a deployment: batched calls, loaded once per replica.

    Args:
        tool_name: a registered tool (built-in expert or plug-in).
        max_batch_size / batch_wait_timeout_s: how ``@serve.batch`` gathers calls.
    """

    def __init__(self, tool_name: str, max_batch_size: int = 8, batch_wait_timeout_s: float = 0.01) -> None:
        self.tool = _resolve(tool_name)
        self.tool.ensure_ready()  # load the model when the replica starts, not on the first call
        self.run.set_max_batch_size(max_batch_size)
        self.run.set_batch_wait_timeout_s(batch_wait_timeout_s)

    def _run_group(self, images: list[Image], options: dict[str, Any]) -> list[Observation]:
        run_batch = getattr(self.tool, "run_batch", None)
        if callable(run_batch):
            return [Observation.coerce(o) for o in run_batch(images, **options)]
        image_param = self.tool.image_params[0]
        return [self.tool.invoke({**self.tool.bind((), {**options, image_param: "x"}), image_param: image})
                for image in images]

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def run(self, pixels: list[Any], options: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A batch of ``(RGB uint8 array, options)`` calls -> ``{"text", "artifact", "error"}`` each."""
        images = [load_image(p) for p in pixels]
        groups: dict[str, list[int]] = {}
        for i, opts in enumerate(options):
            groups.setdefault(repr(sorted(opts.items())), []).append(i)
        out: list[dict[str, Any]] = [{}] * len(images)
        for indices in groups.values():
            try:
                results = await asyncio.to_thread(self._run_group, [images[i] for i in indices], options[indices[0]])
            except Exception as exc:  # noqa: BLE001 - one failing group must not fail the others
                from ..errors import one_line

                results = [Observation.failure(f"{self.tool.name} failed: {one_line(exc)}") for _ in indices]
            for i, obs in zip(indices, results):
                out[i] = {"text": obs.text, "artifact": obs.artifact, "error": obs.error}
        return out

    async def __call__(self, pixels: Any, options: dict[str, Any]) -> dict[str, Any]:
        return await self.run(pixels, options)


def remote_tool(name: str, handle: Any, *, timeout_s: float = 300.0) -> Tool:
    """A tool that looks exactly like the registered tool ``name`` but runs on the deployment ``handle``.

    Only images and JSON-able options cross the wire (the image as an RGB uint8 array).
    """
    local = _resolve(name)  # declaration only: built-in experts load nothing until setup()
    if len(local.image_params) != 1:
        raise ValueError(f"{name}: a remote tool takes exactly one image parameter.")
    image_param = local.image_params[0]
    signature = inspect.signature(local.run)
    hints = typing.get_type_hints(local.run)

    def call(**arguments: Any) -> Observation:
        image: Image = arguments.pop(image_param)
        reply = handle.remote(image.to_numpy(), arguments).result(timeout_s=timeout_s)
        return Observation(text=reply["text"], artifact=reply["artifact"], error=bool(reply["error"]))

    call.__signature__ = signature  # type: ignore[attr-defined]
    call.__annotations__ = {k: v for k, v in hints.items() if k in signature.parameters}
    documented = [f"    {p.name}: {p.description}" for p in local.params if p.description]
    description = local.description + ("\n\nArgs:\n" + "\n".join(documented) if documented else "")
    remote = tool(call, name=local.name, description=description, cacheable=local.cacheable)
    remote.cache_version = local.cache_version
    return remote


class MMReactIngress:
    """The OpenAI-compatible app as a deployment; see the module doc."""

    def __init__(self, experts: dict[str, Any], llm: str | None = None, local_tools: Sequence[str] = (),
                 max_steps: int = 8, config: dict[str, Any] | None = None) -> None:
        self.experts = experts
        self.llm = llm
        self.local_tools = list(local_tools)
        self.max_steps = max_steps
        config = dict(config or {})
        if not config.get("api_keys") and os.environ.get("MMREACT_API_KEY"):  # e.g. from the runtime_env
            config["api_keys"] = tuple(k.strip() for k in os.environ["MMREACT_API_KEY"].split(",") if k.strip())
        self.config = ServeConfig(**config)

    def build_agent(self) -> Agent:
        tools: list[Any] = [remote_tool(name, handle) for name, handle in self.experts.items()]
        return Agent(llm=self.llm, tools=[*self.local_tools, *tools], max_steps=self.max_steps)

    def __serve_build_asgi_app__(self) -> Any:
        from .app import create_app

        # the replica takes traffic once startup ends: it ends when the agent is loaded
        return create_app(self.build_agent, self.config, ready_before_serving=True)


def _split(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def _backpressure() -> dict[str, Any]:
    """Ray's own refusals as 429 with ``Retry-After``, where this Ray can say so (2.60 and later)."""
    try:
        from ray.serve.config import BackpressureConfig
    except ImportError:
        return {}
    return {"backpressure_config": BackpressureConfig(status_code=429, retry_after_s=2)}


def build_app(args: dict[str, Any] | None = None) -> serve.Application:
    """The Ray Serve application (an application builder for ``serve run`` / ``serve deploy``).

    Args (strings from the command line, or values from a config file):
        tools: experts to run as their own deployments (default ``ocr``).
        local_tools: tools to run inside the ingress replicas instead.
        llm: the LLM spec of the agent (default: the embedded default).
        max_steps: model turns per question.
        expert_gpus: GPUs per expert replica (default 0; e.g. 0.25 to pack four experts on one GPU).
        max_batch_size, batch_wait_timeout_s: ``@serve.batch`` settings of the experts.
        min_replicas, max_replicas: autoscaling bounds of the ingress (default 1..4).
        any :class:`ServeConfig` field (``api_keys`` comma-separated, ``max_concurrency`` ...).
        Without ``api_keys``, the ingress replicas take them from ``MMREACT_API_KEY`` if it is set.
    """
    args = dict(args or {})
    tools = _split(args.pop("tools", "ocr"))
    local_tools = _split(args.pop("local_tools", None))
    llm = args.pop("llm", None)
    max_steps = int(args.pop("max_steps", 8))
    gpus = float(args.pop("expert_gpus", 0))
    batch = int(args.pop("max_batch_size", 8))
    wait = float(args.pop("batch_wait_timeout_s", 0.01))
    min_replicas = int(args.pop("min_replicas", 1))
    max_replicas = int(args.pop("max_replicas", 4))
    config: dict[str, Any] = {}
    for key, value in args.items():
        if key not in _CONFIG_FIELDS:
            raise ValueError(f"Unknown argument '{key}' for mmreact's Ray Serve app.")
        field_type = type(getattr(ServeConfig(), key))
        if key == "api_keys":
            config[key] = tuple(_split(value))
        elif field_type is bool:
            config[key] = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
        else:
            config[key] = field_type(value)
    # Ray owns the socket; the app's own host check does not apply (bind Ray's proxy with http_options)
    config["insecure"] = True
    settings = ServeConfig(**config)
    admitted = settings.max_concurrency + settings.max_queue
    expert_deployment = serve.deployment(ExpertServer)
    experts = {
        name: expert_deployment.options(
            name=f"expert_{name}", ray_actor_options={"num_gpus": gpus, "num_cpus": 0 if gpus else 1},
            max_ongoing_requests=batch * 4,
            autoscaling_config={"min_replicas": 1, "max_replicas": max_replicas, "target_ongoing_requests": batch},
        ).bind(name, batch, wait)
        for name in tools
    }
    ingress = serve.deployment(serve.ingress()(MMReactIngress)).options(
        name="MMReactIngress", ray_actor_options={"num_cpus": 1},
        max_ongoing_requests=2 * admitted,  # the app answers past `admitted` with 429 (see the module doc)
        max_queued_requests=admitted,
        autoscaling_config={"min_replicas": min_replicas, "max_replicas": max_replicas,
                            "target_ongoing_requests": settings.max_concurrency},
        **_backpressure(),
    )
    return ingress.bind(experts, llm, local_tools, max_steps, config)
