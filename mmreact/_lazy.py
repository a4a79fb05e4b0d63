"""Import an object named ``"package.module:attr.sub"`` on first use (backends, tools, systems)."""

from __future__ import annotations

import importlib
from typing import Any


def import_target(target: str) -> Any:
    """The object ``target`` names; ``"module"`` alone gives the module."""
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj
