"""``beamwright templates export NAME [-p ...] [--out FILE]``: a template's expanded spec as a
YAML spec file that ``beamwright run FILE`` accepts unchanged.

The file is the validated spec dumped back: values equal to their defaults are left out (so
it reads like a hand-written spec and picks up no stale defaults), everything else is kept,
including the ``template`` it came from. Relative paths (output directories) stay relative to
the working directory, as in any spec file. Secret parameters appear as their references
(``file:``, ``env:``, store names), never as values: a spec never holds one.
"""

from __future__ import annotations

from typing import Any


def spec_yaml(spec: Any, *, header: str = "") -> str:
    """YAML text of ``spec`` that loads back into an equal spec."""
    import yaml

    data = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    # ``dead_letter`` has no default but its ``type`` does; keep the spec's required keys
    for key in ("name", "sources", "sinks", "dead_letter"):
        data.setdefault(key, spec.model_dump(mode="json", by_alias=True)[key])
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    return header + text


def export_header(name: str, params: dict[str, str]) -> str:
    given = " ".join(f"-p {k}={v}" for k, v in params.items())
    command = f"beamwright templates export {name}" + (f" {given}" if given else "")
    return f"# Expanded from the template '{name}' by: {command}\n# Run it: beamwright run FILE\n"
