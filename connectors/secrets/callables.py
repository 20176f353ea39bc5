"""Load a user hook named ``"package.module:function"`` from a policy file."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from connectors.secrets import SecretError


def load_callable(path: str) -> Callable[..., Any]:
    """The callable at ``module:attribute``; SecretError naming the path if it is not one."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise SecretError(f"expected 'module:function', got {path!r}")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise SecretError(f"cannot load {path!r}: {exc}") from None
    if not callable(target):
        raise SecretError(f"{path!r} is not callable")
    return target
