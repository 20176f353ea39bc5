"""Loading spec files: YAML/JSON parsing, ``${name}`` parameter substitution, clear errors.

Substitution happens on the raw data before the models validate it, so a parameter used as a
whole value keeps its type (``max: ${max_amount}`` stays a number) and a parameter inside a
string is formatted into it (``path: ${input_dir}/orders.jsonl``). Nothing is evaluated as
Python: ``${...}`` only ever names a parameter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from connectors.errors import BeamwrightError, closest
from pipelines.spec import ParameterSpec, PipelineSpec

PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SpecError(BeamwrightError, ValueError):
    """A spec or its parameters are invalid. Each problem names its path, what is wrong and a fix."""

    def __init__(self, problems: list[str], origin: str = "spec") -> None:
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{origin} is invalid ({len(problems)} problem(s)):\n{lines}")
        self.problems = problems
        self.origin = origin


def format_path(loc: tuple[Any, ...]) -> str:
    """``('steps', 2, 'rules', 0, 'max')`` -> ``steps[2].rules[0].max``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _strip_union_tags(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Pydantic puts the discriminator value in error paths (``steps.2.validate.rules``);
    users think in positions, so drop a string that directly follows a list index when it is
    the node's own tag."""
    tags = _union_tags()
    out: list[Any] = []
    for i, part in enumerate(loc):
        if isinstance(part, str) and i > 0 and isinstance(loc[i - 1], int) and part in tags:
            continue
        out.append(part)
    return tuple(out)


def _union_tags() -> set[str]:
    """The tags of every discriminated union a spec can hold: each kind's ``type`` and the
    tags of unions inside kind models (a validate step's ``rule``)."""
    from typing import get_args

    from pipelines import registry

    tags: set[str] = set()
    for role in registry.ROLES:
        for kind in registry.kinds(role).values():
            tags.add(kind.type)
            for info in kind.model.model_fields.values():
                for model in _union_members(info.annotation):
                    for tag_field in ("type", "rule"):
                        tag = model.model_fields.get(tag_field)
                        if tag is not None:
                            tags.update(get_args(tag.annotation))
    return tags


def _union_members(annotation: Any) -> list[Any]:
    """Pydantic models in a (possibly list-of, Annotated) union annotation."""
    from typing import get_args

    from pydantic import BaseModel

    found = []
    for arg in get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            found.append(arg)
        else:
            found += _union_members(arg)
    return found


def _describe(error: Mapping[str, Any]) -> str:
    loc = _strip_union_tags(tuple(error["loc"]))
    path = format_path(loc) or "(top level)"
    kind = error["type"]
    msg = str(error["msg"]).removeprefix("Value error, ")
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        tag, expected = ctx.get("tag", "?"), ctx.get("expected_tags", "")
        choices = [t.strip(" '") for t in str(expected).split(",")]
        guess = closest(str(tag), choices)
        hint = f"did you mean '{guess}'?" if guess else f"use one of {expected}"
        return f"{path}: unknown kind '{tag}'; {hint}"
    if kind == "union_tag_not_found":
        ctx = error.get("ctx", {})
        return f"{path}: missing '{ctx.get('discriminator', 'type').strip(chr(39))}' key"
    if kind == "missing":
        return f"{path}: required key is missing"
    if kind == "value_error" and re.match(r"^[a-z_]+(\[\d+\])?(\.|:)", msg):
        return msg  # the validator already named the path (graph checks)
    if kind == "literal_error":
        value = error.get("input")
        expected = error.get("ctx", {}).get("expected", "")
        choices = re.findall(r"'([^']*)'", str(expected))
        guess = closest(str(value), choices) if choices else None
        hint = f"; did you mean '{guess}'?" if guess else ""
        return f"{path}: {value!r} is not allowed; expected {expected}{hint}"
    return f"{path}: {msg}"


def validation_problems(
    exc: ValidationError, parameters: Mapping[str, Any] | None = None
) -> list[str]:
    """One ``path: problem`` per pydantic error. ``parameters`` are the parameter values the
    user gave: an error whose rejected value is one of them names that parameter first
    (``parameters.page_size (at sources[0].page_size): ...``), since the parameter is what the
    user typed and the spec path is only where the template put it. The value is not echoed
    (it may be a secret)."""
    problems = []
    for error in exc.errors(include_url=False):
        problem = _describe(error)
        name = _parameter_of(error.get("input"), parameters or {})
        if name is not None:
            where, sep, rest = problem.partition(": ")
            problem = f"parameters.{name} (at {where}): {rest}" if sep else problem
        problems.append(problem)
    return problems


def _parameter_of(value: Any, parameters: Mapping[str, Any]) -> str | None:
    """The one given parameter whose value is ``value`` (same type: True is not 1), else None."""
    if value is None or isinstance(value, (dict, list)):
        return None
    names = [
        name for name, given in parameters.items() if type(given) is type(value) and given == value
    ]
    return names[0] if len(names) == 1 else None


def expand_template(template: Any, given: Mapping[str, Any]) -> PipelineSpec:
    """``template`` (a :class:`templates.base.Template`) expanded with the ``given`` parameter
    values: SpecError with path + problem when a value is invalid or makes an invalid spec
    (a value breaking a bound names its parameter: :func:`validation_problems`)."""
    values = resolve_parameters(template.parameters, given)
    try:
        return template.expand(values)
    except ValidationError as exc:
        chosen = {name: values[name] for name in given if name in values}
        raise SpecError(validation_problems(exc, chosen), f"template {template.name}") from None
    except ValueError as exc:
        raise SpecError([str(exc)], f"template {template.name}") from None


# --------------------------------------------------------------------------- parameters


def secret_reference(raw: Any) -> dict[str, Any]:
    """A ``secret`` parameter's value as a SecretSpec mapping: ``env:VAR``, ``file:/path``,
    or a mapping (YAML or JSON text, one line so it fits a ``--param=value`` argument).
    Raises ValueError (never echoing the text, which a user may have mistaken for the value)."""
    from pipelines.spec_base import SecretSpec

    if isinstance(raw, dict):
        data = raw
    else:
        text = str(raw).strip()
        kind, sep, rest = text.partition(":")
        if sep and kind in ("env", "file") and rest and not rest.startswith(" "):
            data = {kind: rest}
        else:
            data = parse_yaml(text)
            if not isinstance(data, dict):
                raise ValueError("not a secret reference")
    if SecretSpec.model_validate(data).store not in (None, {}) and "name" not in data["store"]:
        raise ValueError("a store reference needs the secret's name")
    return data


def _coerce(name: str, spec: ParameterSpec, raw: Any) -> Any:
    """Turn a parameter value (from the CLI it is always text) into its declared type."""
    kind = spec.type
    try:
        if kind == "string":
            value: Any = raw if isinstance(raw, str) else str(raw)
        elif kind == "integer":
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            value = int(raw)
        elif kind == "number":
            if isinstance(raw, bool):
                raise ValueError
            value = float(raw)
        elif kind == "boolean":
            if isinstance(raw, bool):
                value = raw
            elif str(raw).lower() in ("true", "1", "yes", "on"):
                value = True
            elif str(raw).lower() in ("false", "0", "no", "off"):
                value = False
            else:
                raise ValueError
        elif kind == "secret":
            value = secret_reference(raw)
        else:  # list
            if isinstance(raw, list):
                value = raw
            elif isinstance(raw, str) and raw.strip().startswith("["):
                value = json.loads(raw)
            else:
                value = [v.strip() for v in str(raw).split(",") if v.strip()]
    except (ValueError, TypeError, json.JSONDecodeError):
        raise ValueError(
            f"parameters.{name}: {'the value' if kind == 'secret' else repr(raw)} is not a "
            f"valid {kind}"
            + ("; give a comma-separated list or a JSON array" if kind == "list" else "")
            + (
                "; give env:VAR, file:/path or {store: {type: ...}, name: NAME}"
                if kind == "secret"
                else ""
            )
        ) from None
    if spec.choices is not None:
        items = value if isinstance(value, list) else [value]
        for item in items:
            if item not in spec.choices:
                guess = closest(str(item), [str(c) for c in spec.choices])
                hint = f"did you mean '{guess}'?" if guess else f"choose from {spec.choices}"
                raise ValueError(f"parameters.{name}: {item!r} is not allowed; {hint}")
    return value


def resolve_parameters(
    declared: Mapping[str, ParameterSpec], given: Mapping[str, Any]
) -> dict[str, Any]:
    """Typed values for every declared parameter: given ones coerced, the rest defaulted."""
    problems: list[str] = []
    for name in given:
        if name not in declared:
            guess = closest(name, list(declared))
            hint = (
                f"did you mean '{guess}'?"
                if guess
                else f"declared: {', '.join(declared) or 'none'}"
            )
            problems.append(f"parameters.{name}: not a parameter of this pipeline; {hint}")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        try:
            if name in given:
                values[name] = _coerce(name, spec, given[name])
            elif spec.default is not None:
                values[name] = _coerce(name, spec, spec.default)
            elif spec.required:
                problems.append(
                    f"parameters.{name}: required and has no default; pass --param {name}=..."
                )
            else:
                values[name] = None
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise SpecError(problems, "parameters")
    return values


def substitute(data: Any, values: Mapping[str, Any], path: str = "") -> Any:
    """Replace ``${name}`` placeholders throughout ``data``; unknown names are errors."""
    if isinstance(data, dict):
        return {
            k: substitute(v, values, f"{path}.{k}" if path else str(k)) for k, v in data.items()
        }
    if isinstance(data, list):
        return [substitute(v, values, f"{path}[{i}]") for i, v in enumerate(data)]
    if not isinstance(data, str) or "${" not in data:
        return data
    for name in PLACEHOLDER.findall(data):
        if not _IDENT.match(name) or name not in values:
            guess = closest(name, list(values))
            hint = f"did you mean '${{{guess}}}'?" if guess else "declare it under 'parameters'"
            raise SpecError([f"{path}: '${{{name}}}' is not a declared parameter; {hint}"])
    whole = PLACEHOLDER.fullmatch(data)
    if whole:
        return values[whole.group(1)]
    return PLACEHOLDER.sub(lambda m: _as_text(values[m.group(1)]), data)


def _as_text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return "" if value is None else str(value)


# --------------------------------------------------------------------------- entry points


class _SpecLoader(yaml.SafeLoader):
    """YAML's safe loader with mapping keys that are always what was written.

    YAML 1.1 reads ``on``, ``off``, ``yes``, ``no``, ``true`` and ``false`` as booleans, so the
    lookup step's ``on: customer_id`` arrived as the key ``True`` and failed as an unknown key.
    A spec key is a name, never a boolean, so plain scalar keys that resolve to booleans keep
    their text. Values are untouched: ``required: yes`` still means true.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)  # merged (``<<``) keys are keys of this mapping too
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == _YAML_BOOL:
                key_node.tag = _YAML_STR
        return super().construct_mapping(node, deep=deep)


_YAML_BOOL, _YAML_STR = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:str"


def parse_yaml(text: str) -> Any:
    """Plain data from YAML text (safe: no Python tags), boolean-looking keys kept as text."""
    return yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader subclass


def read_spec_file(path: str | Path) -> dict[str, Any]:
    """Parse a YAML or JSON spec file into plain data (no Python tags are honoured)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([f"file not found: {p}"], str(p)) from None
    except UnicodeDecodeError as exc:
        raise SpecError([f"not UTF-8 text: {exc}"], str(p)) from None
    try:
        data = json.loads(text) if p.suffix == ".json" else parse_yaml(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise SpecError([f"cannot parse: {exc}"], str(p)) from None
    if not isinstance(data, dict):
        raise SpecError(["the top level must be a mapping with 'name', 'sources', ..."], str(p))
    return data


def spec_from_data(
    data: Mapping[str, Any], params: Mapping[str, Any] | None = None, origin: str = "spec"
) -> PipelineSpec:
    """Validate raw spec data, substituting parameters first."""
    raw_params = data.get("parameters") or {}
    try:
        declared = {k: ParameterSpec.model_validate(v) for k, v in raw_params.items()}
    except ValidationError as exc:
        raise SpecError([f"parameters.{p}" for p in validation_problems(exc)], origin) from None
    except AttributeError:
        raise SpecError(
            ["parameters: must be a mapping of name -> {type, default, ...}"], origin
        ) from None
    try:
        values = resolve_parameters(declared, params or {})
    except SpecError as exc:
        raise SpecError(exc.problems, origin) from None
    body = {k: v for k, v in data.items() if k != "parameters"}
    try:
        body = substitute(body, values)
    except SpecError as exc:
        raise SpecError(exc.problems, origin) from None
    body["parameters"] = raw_params
    _load_plugins(body.get("plugins"), origin)
    try:
        return PipelineSpec.model_validate(body)
    except ValidationError as exc:
        chosen = {name: values[name] for name in params or {} if name in values}
        raise SpecError(validation_problems(exc, chosen), origin) from None


def _load_plugins(plugins: Any, origin: str) -> None:
    """Register the kinds of the modules a spec names in ``plugins`` before validating it."""
    from pipelines.registry import KindError, load_plugin

    if plugins is None:
        return
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise SpecError(["plugins: must be a list of module names, e.g. [mypkg.kinds]"], origin)
    for i, module in enumerate(plugins):
        try:
            load_plugin(module)
        except KindError as exc:
            raise SpecError([f"plugins[{i}]: {exc}"], origin) from None


def load_spec(path: str | Path, params: Mapping[str, Any] | None = None) -> PipelineSpec:
    """Load, substitute and validate a spec file. Relative paths in it stay relative to the CWD."""
    return spec_from_data(read_spec_file(path), params, origin=str(path))
