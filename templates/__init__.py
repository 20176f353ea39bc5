"""Business templates: a few business parameters in, a pipeline spec out.

Templates are looked up by name and imported only when used, so listing them stays fast and
never imports Beam.
"""

from __future__ import annotations

import importlib

from connectors.errors import closest

_MODULES = {"data_processing": "templates.data_processing"}


def names() -> list[str]:
    return sorted(_MODULES)


def get_template(name: str):  # noqa: ANN201 - a templates.base.Template
    """The template called ``name``; KeyError with a hint when there is none."""
    if name not in _MODULES:
        guess = closest(name, names())
        hint = f"did you mean '{guess}'?" if guess else f"available: {', '.join(names())}"
        raise KeyError(f"no template named '{name}'; {hint}")
    return importlib.import_module(_MODULES[name]).TEMPLATE
