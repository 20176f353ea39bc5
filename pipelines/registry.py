"""Kinds of sources, steps and sinks, found by their spec ``type``: one module each.

A kind module (``pipelines/steps/validate.py`` is the model) holds everything about its kind:
the pydantic config model (no Beam at import), ``build()`` (imports Beam when called), and
its column-lineage rule, tied together in a module-level ``KIND = Kind(...)``. The spec's
discriminated unions, the builder and the lineage walk all look kinds up here, so adding a
kind is one module and one line in :data:`BUILTIN` — or, from another package, an entry point
(``beamwright.sources``, ``beamwright.steps``, ``beamwright.sinks``) naming the module, a
``plugins:`` line in a spec, or :func:`register` from Python. The same shape as
openlineage-python's transport registry (a ``type`` string -> config + implementation).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, get_args

from connectors.errors import BeamwrightError

ROLES = ("source", "step", "sink")
ENTRY_POINT_GROUPS = {role: f"beamwright.{role}s" for role in ROLES}

BUILTIN: dict[str, tuple[str, ...]] = {
    "source": ("pipelines.sources.file", "pipelines.sources.kafka", "pipelines.sources.http", "pipelines.sources.alpha_vantage", "pipelines.sources.document", "pipelines.sources.postgres", "pipelines.sources.records_api"),
    "step": (
        "pipelines.steps.validate",
        "pipelines.steps.mask",
        "pipelines.steps.map",
        "pipelines.steps.filter",
        "pipelines.steps.lookup",
        "pipelines.steps.dedupe",
        "pipelines.steps.postgres",
        "pipelines.steps.http",
        "pipelines.steps.extract",
        "pipelines.steps.document_fields",
        "pipelines.steps.read_documents",
        "pipelines.steps.window",
        "pipelines.steps.join",
        "pipelines.steps.top",
        "pipelines.steps.batch",
        "pipelines.steps.reconcile",
    ),
    "sink": (
        "pipelines.sinks.file",
        "pipelines.sinks.report",
        "pipelines.sinks.kafka",
        "pipelines.sinks.notify",
        "pipelines.sinks.postgres",
        "pipelines.sinks.records_api",
    ),
}


def _nothing(node: Any) -> tuple[()]:
    return ()


def _no_classifications(node: Any) -> dict[str, str]:
    return {}


def _nothing_declared(node: Any) -> dict[str, str]:
    return {}


def _unknown_fields(node: Any) -> None:
    return None


def _pass_through(node: Any, state: Any, walk: Any, path: str) -> Any:
    return state


def _settled(node: Any, path: str, spec: Any) -> None:
    return None


def _no_problems(node: Any, table: Any) -> list[str]:
    return []


def _no_origins(node: Any, dataset: Any, path: str) -> tuple[dict, dict]:
    return {}, {}


@dataclass(frozen=True)
class Kind:
    """One source, step or sink kind.

    Attributes:
        role: "source", "step" or "sink".
        model: the pydantic config model; its ``type`` field is a one-value Literal.
        build: ``build(node, ctx, path)`` for sources; ``build(node, ctx, path, rows)`` for
            steps (returns the step's ``rows``/``dead_letters`` outputs) and sinks.
        lineage: steps and sinks: ``lineage(node, state, walk, path) -> FieldState``, the
            rows' fields after this node given those before it (see
            :mod:`pipelines.column_lineage`); records every field the node names in
            ``walk.reads``. Default: a pass-through that names no field.
        known_fields: sources: the field names known without reading the data, or None.
        declared_fields: steps: field -> type of the fields the node declares its rows have
            (validate's ``fields`` and schema file). Lineage describes a source the node reads
            directly by them when the source's own schema is unknown (a JSON Kafka topic).
        expressions: ``(path below the node, text)`` of every expression the node holds.
        side_inputs: names of sources the node reads as side inputs (a lookup's table): they
            are not main inputs of the first step.
        classifications: field -> classification (e.g. PII) the node declares, for redaction
            and lineage.
        assertions: steps that check rows: ``assertions(node, failures by rule id)`` -> the
            dataQualityAssertions entries for one input dataset; None for steps that do not.
        paths: ``(key, path, is_file)`` of the files the node reads (sources: globs) or owns
            (sinks), so that outputs overlapping each other or inputs fail validation.
        unbounded: sources: whether the source can be unbounded (sinks adapt, see ``settle``).
        settle: sinks: ``settle(node, path, spec)`` fills defaults that depend on the whole
            spec (a file sink appends when a source can be unbounded) or raises ValueError.
        origins: sources: ``origins(node, dataset, path)`` -> (file path -> FileOrigin, topic
            -> KafkaOrigin): how to read a record again by its position, so dead letters keep
            the original record (:mod:`connectors.originals`).
        dry_run: sinks that work on the rows themselves: problems (``"key: problem"``) found
            by trying an empty table with the real input schema (``validate --deep``).
        combines: steps whose output rows are made of several input rows (a join's pairs, a
            window's aggregates, top's rankings): their ``rows_out`` counts the input rows
            used, so what they pass on is counted apart (``rows_emitted``) for the run
            summary's check between nodes. Sinks that combine (a report) count the rows they
            receive as ``rows_in`` and write a few aggregate rows: only the check between
            nodes applies to them.
        counts_side_inputs: steps whose ``rows_in`` counts their side inputs' rows too
            (reconcile keys its ``target`` rows with its input's): those are edges of the
            run summary's check between nodes; a lookup's table, read whole, is not.
        masks: steps that mask: ``(index, rule)`` of each mask rule (``field``, ``strategy``,
            ``when``). Rules with a ``when`` condition are applied per output audience, by
            building the node again with those rules unconditional
            (:mod:`pipelines.audience_masks`).
    """

    role: str
    model: type
    build: Callable[..., Any]
    lineage: Callable[..., Any] = _pass_through
    known_fields: Callable[[Any], list[str] | None] = _unknown_fields
    declared_fields: Callable[[Any], Mapping[str, str]] = _nothing_declared
    expressions: Callable[[Any], Iterable[tuple[str, str]]] = _nothing
    side_inputs: Callable[[Any], Iterable[str]] = _nothing
    classifications: Callable[[Any], Mapping[str, str]] = _no_classifications
    assertions: Callable[[Any, dict[str, int]], list[dict[str, Any]]] | None = None
    paths: Callable[[Any], Iterable[tuple[str, str, bool]]] = _nothing
    unbounded: bool = False
    settle: Callable[[Any, str, Any], None] = _settled
    dry_run: Callable[[Any, Any], list[str]] = _no_problems
    origins: Callable[[Any, Any, str], tuple[dict, dict]] = _no_origins
    masks: Callable[[Any], Iterable[tuple[int, Any]]] = _nothing
    combines: bool = False
    counts_side_inputs: bool = False

    @property
    def type(self) -> str:
        (value,) = get_args(self.model.model_fields["type"].annotation)
        return value


class KindError(BeamwrightError, ValueError):
    """A kind module or plugin that cannot be registered; the message says which and why."""


_kinds: dict[str, dict[str, Kind]] | None = None
_on_change: list[Callable[[], None]] = []


def kinds(role: str) -> dict[str, Kind]:
    """``type`` -> Kind for ``role``: the built-ins, then entry-point plugins, then any
    registered from Python (loaded once, on first use)."""
    return _loaded()[role]


def kind_of(node: Any) -> Kind:
    """The Kind of a spec node (a source, step or sink model instance)."""
    for table in _loaded().values():
        kind = table.get(getattr(node, "type", None))
        if kind is not None and isinstance(node, kind.model):
            return kind
    raise KindError(f"no kind is registered for {type(node).__name__}")


def register(kind: Kind) -> None:
    """Add (or replace) a kind; the spec's unions are rebuilt so specs may use it at once."""
    if kind.role not in ROLES:
        raise KindError(f"a kind's role is one of {ROLES}, not {kind.role!r}")
    _loaded()[kind.role][kind.type] = kind
    for callback in _on_change:
        callback()


def load_plugin(module: str) -> list[Kind]:
    """Import ``module`` (a dotted path) and register its ``KIND`` or ``KINDS``."""
    found = _module_kinds(module)
    for kind in found:
        register(kind)
    return found


def on_change(callback: Callable[[], None]) -> None:
    """Call ``callback`` whenever a kind is registered (the spec rebuilds its unions)."""
    _on_change.append(callback)


def _module_kinds(module: str) -> list[Kind]:
    try:
        loaded = importlib.import_module(module)
    except ImportError as exc:
        raise KindError(f"cannot import kind module '{module}': {exc}") from None
    found = getattr(loaded, "KINDS", None) or [getattr(loaded, "KIND", None)]
    if not all(isinstance(k, Kind) for k in found):
        raise KindError(f"module '{module}' defines no KIND (or KINDS) of type registry.Kind")
    return list(found)


def _loaded() -> dict[str, dict[str, Kind]]:
    global _kinds
    if _kinds is None:
        table: dict[str, dict[str, Kind]] = {role: {} for role in ROLES}
        for role, modules in BUILTIN.items():
            for module in modules:
                for kind in _module_kinds(module):
                    table[role][kind.type] = kind
        for kind in _entry_point_kinds():
            table[kind.role][kind.type] = kind
        _kinds = table
    return _kinds


def _entry_point_kinds() -> Iterable[Kind]:
    from importlib.metadata import entry_points

    for role, group in ENTRY_POINT_GROUPS.items():
        for point in entry_points(group=group):
            value = point.load()  # a kind module, or "module:KIND" naming a Kind
            found = _module_kinds(value.__name__) if isinstance(value, ModuleType) else [value]
            for kind in found:
                if not isinstance(kind, Kind) or kind.role != role:
                    raise KindError(
                        f"entry point '{point.name}' in group '{group}' gives no {role} Kind"
                    )
                yield kind
