"""Every name a public package lists in ``__all__`` can be imported (a lazy import that names a module
which has moved fails here, not in a user's code)."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = ["mmreact", "mmreact.llms", "mmreact.tools", "mmreact.grounding", "mmreact.eval", "mmreact.datagen",
            "mmreact.serve", "mmreact.mllm", "mmreact.weights"]


@pytest.mark.parametrize("name", PACKAGES)
def test_every_listed_name_imports(name: str) -> None:
    module = importlib.import_module(name)
    listed = getattr(module, "__all__", None)
    assert listed, f"{name} lists its public names"
    missing = []
    for attr in listed:
        try:
            getattr(module, attr)
        except (AttributeError, ImportError) as exc:
            missing.append(f"{attr}: {exc}")
    assert not missing, missing
