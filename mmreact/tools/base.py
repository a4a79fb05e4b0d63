"""The tool API: declare a tool once, as a decorated function or a class.

A tool's name, description and argument schema come from its signature and docstring and are
checked when the tool is created; every error names the tool. A parameter annotated with
:class:`mmreact.Image` receives an image: the model names it by handle (``image_1``) and the
engine passes the loaded image.

    @tool
    def count_pixels(image: Image, channel: Literal["r", "g", "b"] = "r") -> str:
        '''Count bright pixels in one colour channel.

        Args:
            image: the image to look at
            channel: which channel to count
        '''
"""

from __future__ import annotations

import inspect
import re
import threading
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Union, get_args, get_origin

import pydantic

from ..errors import ToolDefinitionError
from ..images import Image
from ..observation import Observation

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_SCALARS: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}

if TYPE_CHECKING:
    from ..weights import Status, Weights


class ArgumentError(ValueError):
    """Arguments a model gave do not fit a tool (becomes an observation, never raised to users)."""


@dataclass(frozen=True, slots=True)
class Param:
    """One tool parameter, derived from the signature."""

    name: str
    annotation: Any
    description: str
    required: bool
    default: Any = None
    is_image: bool = False

    def type_label(self) -> str:
        if self.is_image:
            return "image"
        return _label(self.annotation)


def _label(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return "|".join(repr(a) for a in get_args(annotation))
    if origin in (Union, types.UnionType):
        return " or ".join(_label(a) for a in get_args(annotation))
    if origin in (list, tuple):
        inner = get_args(annotation)
        return f"list[{_label(inner[0]) if inner else 'any'}]"
    if annotation is type(None):
        return "null"
    return {str: "str", int: "int", float: "float", bool: "bool"}.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _check_annotation(tool_name: str, pname: str, annotation: Any) -> bool:
    """Validate a parameter type; return True when it is an image parameter."""
    if annotation is Image:
        return True
    origin = get_origin(annotation)
    if annotation in _SCALARS:
        return False
    if origin is Literal:
        if not all(isinstance(a, (str, int, float, bool)) for a in get_args(annotation)):
            raise ToolDefinitionError(f"tool '{tool_name}': parameter '{pname}' has a Literal with non-scalar values.")
        return False
    if origin in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if any(m is Image for m in members):
            raise ToolDefinitionError(f"tool '{tool_name}': parameter '{pname}' mixes Image with other types.")
        for m in members:
            _check_annotation(tool_name, pname, m)
        return False
    if origin in (list, tuple):
        for a in get_args(annotation):
            if a is not Ellipsis:
                _check_annotation(tool_name, pname, a)
        return False
    raise ToolDefinitionError(
        f"tool '{tool_name}': parameter '{pname}' has unsupported type {annotation!r}; "
        "use str, int, float, bool, Literal[...], list[...], Optional[...] or mmreact.Image."
    )


def _parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    if not doc:
        return "", {}
    import docstring_parser

    parsed = docstring_parser.parse(doc)
    parts = [p for p in (parsed.short_description, parsed.long_description) if p]
    summary = "\n".join(parts).strip()
    return summary, {p.arg_name: (p.description or "").strip() for p in parsed.params}


def _params_from(tool_name: str, fn: Callable[..., Any], arg_docs: dict[str, str]) -> tuple[Param, ...]:
    try:
        sig = inspect.signature(fn)
        hints = typing.get_type_hints(fn)
    except (NameError, TypeError) as exc:
        raise ToolDefinitionError(f"tool '{tool_name}': cannot read its type annotations ({exc}).") from None
    params = []
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ToolDefinitionError(f"tool '{tool_name}': *args/**kwargs are not allowed (parameter '{p.name}').")
        if p.name not in hints:
            raise ToolDefinitionError(f"tool '{tool_name}': parameter '{p.name}' has no type annotation.")
        annotation = hints[p.name]
        is_image = _check_annotation(tool_name, p.name, annotation)
        required = p.default is inspect.Parameter.empty
        if is_image and not required:
            raise ToolDefinitionError(f"tool '{tool_name}': image parameter '{p.name}' cannot have a default.")
        params.append(
            Param(
                name=p.name,
                annotation=annotation,
                description=arg_docs.get(p.name, ""),
                required=required,
                default=None if required else p.default,
                is_image=is_image,
            )
        )
    return tuple(params)


class Tool:
    """Base class of every tool.

    Subclasses set ``name`` (and optionally ``description``; the class docstring is used
    otherwise) and implement :meth:`run`, whose signature gives the argument schema. Heavy
    models load in :meth:`setup`, which runs once, lazily, before the first call; :meth:`check`
    says (without loading anything) whether the tool can run on this machine.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: Cache results process-wide by image content + arguments (experts set this).
    cacheable: ClassVar[bool] = False
    #: Part of the cache key: bump it (or include the model id) when outputs would change.
    cache_version: str = "1"

    def cache_identity(self) -> str:
        """What, besides the tool's name and the arguments, decides a cached result's validity:
        ``cache_version`` here; experts add their weights, device and dtype, and function tools
        a hash of their code (see :mod:`mmreact.cache`)."""
        return self.cache_version

    def __init__(self) -> None:
        self._init_schema(type(self).name, type(self).description or (type(self).__doc__ or ""), self.run)

    # -- declaration -------------------------------------------------------------------
    def _init_schema(self, name: str, description: str, fn: Callable[..., Any]) -> None:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ToolDefinitionError(
                f"tool {name!r}: a tool name must be a Python identifier of at most 64 characters."
            )
        summary, fn_arg_docs = _parse_docstring(inspect.getdoc(fn))
        desc_summary, desc_arg_docs = _parse_docstring(inspect.cleandoc(description) if description else "")
        self.name = name  # type: ignore[misc]
        self.description = (desc_summary or summary).strip()  # type: ignore[misc]
        if not self.description:
            raise ToolDefinitionError(f"tool '{name}': it needs a description (a docstring or description=...).")
        self.params = _params_from(name, fn, {**desc_arg_docs, **fn_arg_docs})
        fields: dict[str, Any] = {}
        for p in self.params:
            annotation = str if p.is_image else p.annotation
            fields[p.name] = (annotation, ... if p.required else p.default)
        try:
            self._model = pydantic.create_model(
                f"{name}_args", __config__=pydantic.ConfigDict(extra="forbid", strict=False), **fields
            )
        except (pydantic.PydanticUserError, TypeError, ValueError) as exc:
            raise ToolDefinitionError(f"tool '{name}': invalid parameters ({exc}).") from None
        self._fn = fn
        self._setup_lock = threading.Lock()
        self._ready = False

    # -- to override --------------------------------------------------------------------
    def run(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def setup(self) -> None:
        """Load heavy resources. Called once, lazily, before the first call."""

    def check(self) -> str | None:
        """Return ``None`` when the tool can run here, else one sentence saying what is missing."""
        return None

    # -- weights (a tool with a model says where its weights come from) ---------------------
    def weights(self) -> Weights | None:
        """Where this tool's weights come from (:class:`mmreact.weights.Weights`); ``None``: it needs none."""
        return None

    def weights_here(self) -> bool:
        """Whether the tool can run without downloading anything first: it needs no weights, or
        they are complete on this machine. Never touches the network (prefetch asks this: a
        guess never starts a download)."""
        return True

    def weights_status(self) -> Status:
        """Whether the tool can run here, in the terms ``mmreact tools`` prints: ``ready``,
        ``download`` (on first use), ``offline``, ``manual`` or ``unavailable``, with its sentence."""
        from ..weights import Status

        problem = self.check()
        return Status("ready") if problem is None else Status("unavailable", message=problem)

    # -- calling ------------------------------------------------------------------------
    @property
    def image_params(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params if p.is_image)

    def bind(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        """Map positional and keyword arguments from the model onto validated parameters.

        Image parameters stay as handle strings. Raises :class:`ArgumentError` with a message
        meant for the model.
        """
        kwargs = dict(kwargs or {})
        if len(args) > len(self.params):
            raise ArgumentError(f"{self.name} takes at most {len(self.params)} arguments, got {len(args)}.")
        for p, value in zip(self.params, args):
            if p.name in kwargs:
                raise ArgumentError(f"{self.name} got two values for '{p.name}'.")
            kwargs[p.name] = value
        try:
            validated = self._model.model_validate(kwargs)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(x) for x in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors()
            )
            raise ArgumentError(f"bad arguments for {self.name}: {problems}. Usage: {self.usage()}") from None
        return {p.name: getattr(validated, p.name) for p in self.params}

    def ensure_ready(self) -> None:
        if self._ready:
            return
        with self._setup_lock:
            if not self._ready:
                self.setup()
                self._ready = True

    def invoke(self, arguments: dict[str, Any]) -> Observation:
        """Run the tool on bound arguments (images already resolved to :class:`Image`)."""
        return self.invoke_cached(arguments)[0]

    def invoke_cached(self, arguments: dict[str, Any]) -> tuple[Observation, bool]:
        """Like :meth:`invoke`; also says whether the shared result cache answered (a result
        another thread was computing, and that this call waited for, counts as cached)."""
        obs, source = self.invoke_shared(arguments)
        return obs, source != "computed"

    def invoke_shared(self, arguments: dict[str, Any]) -> tuple[Observation, str]:
        """Like :meth:`invoke`; also says where the result came from: ``"computed"`` here,
        ``"cache"`` (the shared result cache) or ``"waited"`` (the same call was running in another
        thread, e.g. a prefetch, and this one waited for it). Non-cacheable tools always compute."""
        def produce() -> Observation:
            self.ensure_ready()
            return Observation.coerce(self._fn(**arguments))

        if not self.cacheable:
            return produce(), "computed"
        from ..cache import ResultCache, result_cache

        return result_cache().compute(ResultCache.key(self.name, self.cache_identity(), arguments), produce)

    def __call__(self, *args: Any, **kwargs: Any) -> Observation:
        """Call directly from Python: images may be paths, PIL images or numpy arrays."""
        from ..images import load_image

        names = [p.name for p in self.params]
        if len(args) > len(names):
            raise ArgumentError(f"{self.name} takes at most {len(names)} arguments, got {len(args)}.")
        given = {**dict(zip(names, args)), **kwargs}
        images = {p.name: load_image(given[p.name]) for p in self.params if p.is_image and p.name in given}
        bound = self.bind((), {k: ("<image>" if k in images else v) for k, v in given.items()})
        bound.update(images)
        return self.invoke(bound)

    def canonical(self, bound: dict[str, Any]) -> str:
        """One text per distinct call: required arguments positional, changed options by name;
        image handles bare (``image_1``, or a solved example's ``example_1_image_1``)."""
        from ..protocol import format_value

        parts = []
        for p in self.params:
            value = bound.get(p.name)
            text = value if p.is_image and isinstance(value, str) else format_value(value)
            if p.required:
                parts.append(text)
            elif value != p.default:
                parts.append(f"{p.name}={text}")
        return f"{self.name}({', '.join(parts)})"

    # -- describing ---------------------------------------------------------------------
    def usage(self) -> str:
        parts = []
        for p in self.params:
            text = f"{p.name}: {p.type_label()}"
            if not p.required:
                text += f" = {p.default!r}"
            parts.append(text)
        return f"{self.name}({', '.join(parts)})"

    def json_schema(self) -> dict[str, Any]:
        """JSON schema of the arguments (image parameters are handle strings)."""
        schema = self._model.model_json_schema()
        for p in self.params:
            prop = schema.setdefault("properties", {}).setdefault(p.name, {})
            if p.is_image:
                prop["description"] = "image handle, e.g. image_1" + (f"; {p.description}" if p.description else "")
            elif p.description:
                prop["description"] = p.description
        schema.pop("title", None)
        return schema

    def __repr__(self) -> str:
        return f"<Tool {self.usage()}>"


class FunctionTool(Tool):
    """A tool made from a plain function by :func:`tool`."""

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None,
                 cacheable: bool = False) -> None:
        if not callable(fn):
            raise ToolDefinitionError(f"tool {name!r}: {fn!r} is not callable.")
        self._init_schema(name or getattr(fn, "__name__", ""), description or "", fn)
        self.cacheable = cacheable  # type: ignore[misc]
        self.__wrapped__ = fn
        self.__doc__ = fn.__doc__

    def cache_identity(self) -> str:
        """``cache_version`` plus a hash of the function's code: editing the function invalidates
        its cached results (on disk too). Code it calls elsewhere is not covered: bump
        ``cache_version`` when that changes."""
        return f"{self.cache_version}|code:{code_hash(self._fn)}"


def code_hash(fn: Callable[..., Any]) -> str:
    """A hash of a function's source (or, without source, of its compiled code and constants),
    its defaults and its qualified name."""
    import hashlib
    import marshal

    try:
        body = inspect.getsource(fn).encode()
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        body = marshal.dumps(code) if code is not None else repr(fn).encode()
    extra = repr((getattr(fn, "__module__", None), getattr(fn, "__qualname__", None), getattr(fn, "__defaults__", None),
                  getattr(fn, "__kwdefaults__", None))).encode()
    return hashlib.sha256(body + b"\0" + extra).hexdigest()[:16]


@typing.overload
def tool(fn: Callable[..., Any], /) -> FunctionTool: ...
@typing.overload
def tool(*, name: str | None = None, description: str | None = None, cacheable: bool = False) -> Callable[[Callable[..., Any]], FunctionTool]: ...
def tool(fn: Callable[..., Any] | None = None, /, *, name: str | None = None, description: str | None = None,
         cacheable: bool = False) -> Any:
    """Turn a typed, documented function into a :class:`Tool` (usable bare or with options)."""
    if fn is None:
        return lambda f: FunctionTool(f, name=name, description=description, cacheable=cacheable)
    return FunctionTool(fn, name=name, description=description, cacheable=cacheable)


def as_tool(obj: Any) -> Tool:
    """Accept a Tool instance, a Tool subclass or a plain function."""
    if isinstance(obj, Tool):
        return obj
    if isinstance(obj, type) and issubclass(obj, Tool):
        return obj()
    if callable(obj):
        return FunctionTool(obj)
    raise ToolDefinitionError(f"{obj!r} is not a tool: pass a Tool, a Tool subclass or a function.")
