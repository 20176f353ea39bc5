"""Business templates: a few business parameters in, a pipeline spec out.

Templates are looked up by name and imported only when used, so listing them stays fast and
never imports Beam. Templates from other packages register by entry point: group
``beamwright.templates``, name = the template's name, value = the module defining ``TEMPLATE``.
"""

from __future__ import annotations

import importlib

from connectors.errors import did_you_mean

ENTRY_POINT_GROUP = "beamwright.templates"
_BUILTIN = {
    "api_integration": "templates.api_integration",
    "data_processing": "templates.data_processing",
    "document_processing": "templates.document_processing",
    "investment_data": "templates.investment_data",
    "record_sync": "templates.record_sync",
}


def _modules() -> dict[str, str]:
    """Template name -> module: the built-ins, then plugins (entry-point metadata only: no
    plugin is imported until its template is used)."""
    from importlib.metadata import entry_points

    found = dict(_BUILTIN)
    for point in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(point.name, point.value.split(":")[0])
    return found


def names() -> list[str]:
    return sorted(_modules())


def get_template(name: str):  # noqa: ANN201 - a templates.base.Template
    """The template called ``name``; KeyError with a hint when there is none."""
    modules = _modules()
    if name not in modules:
        raise KeyError(
            f"no template named '{name}'; {did_you_mean(name, modules, listing='available')}"
        )
    return importlib.import_module(modules[name]).TEMPLATE
