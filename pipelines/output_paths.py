"""Refuse specs whose outputs overlap each other or their inputs, before anything runs.

A sink owns its output path. Two sinks on one path silently lose one output; a sink (or the
dead letters) inside an input glob reads back its own output next run, or worse. These checks
are plain string logic on the spec (no file system, no Beam), so ``beamwright validate``
makes them too.

Paths compare component by component after normalisation (``./a/../b`` is ``b``; local
relative paths are taken from the current directory; ``gs://bucket/x`` keeps its scheme). An
input glob overlaps an output when some path the output can write could match it: each
component of the glob is matched with ``fnmatch`` against the output's path (``*`` stays
within one component, ``**`` matches any depth).
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://)(.*)$")


@dataclass(frozen=True)
class Output:
    where: str  # spec path of the node, e.g. "sinks[1].path"
    what: str  # how to name it in a message: "sink 'curated'", "the dead letters"
    path: str
    is_file: bool  # a report file rather than a directory


def components(path: str) -> tuple[str, ...]:
    """A normalised path as (scheme-or-root, part, part, ...)."""
    match = _SCHEME.match(path)
    if match:
        scheme, rest = match.groups()
        parts = [p for p in rest.split("/") if p not in ("", ".")]
        return (scheme, *parts)
    absolute = os.path.normpath(os.path.abspath(path))
    return ("/", *[p for p in absolute.split(os.sep) if p])


def _inside(inner: tuple[str, ...], outer: tuple[str, ...]) -> bool:
    return len(inner) >= len(outer) and inner[: len(outer)] == outer


def glob_reaches(pattern: str, output: Output) -> bool:
    """Whether the input ``pattern`` could match the output file or anything under the output
    directory."""
    globbed, target = components(pattern), components(output.path)
    if globbed[0] != target[0]:
        return False
    for i, part in enumerate(globbed[1:], start=1):
        if part == "**":
            return True
        if i >= len(target):
            return not output.is_file  # deeper than the directory: its files can match
        if not fnmatch.fnmatchcase(target[i], part):
            return False
    return len(globbed) == len(target) and output.is_file


def overlaps(outputs: list[Output], inputs: list[tuple[str, str]]) -> Iterator[str]:
    """Problems as ``"<where>: <problem>; <hint>"``; ``inputs`` are (where, glob) pairs."""
    seen: list[tuple[Output, tuple[str, ...]]] = []
    for out in outputs:
        mine = components(out.path)
        for other, theirs in seen:
            if mine == theirs:
                yield (
                    f"{out.where}: {out.what} writes to the same path as {other.what} "
                    f"({other.where}); give each output its own path"
                )
            elif _inside(mine, theirs) or _inside(theirs, mine):
                inner, outer = (out, other) if _inside(mine, theirs) else (other, out)
                yield (
                    f"{out.where}: {inner.what} ({inner.path}) is inside the output of "
                    f"{outer.what} ({outer.path}); outputs must not nest, give each its own path"
                )
        seen.append((out, mine))
        for where, pattern in inputs:
            if glob_reaches(pattern, out):
                yield (
                    f"{out.where}: {out.what} ({out.path}) is inside the input '{pattern}' "
                    f"({where}), so a run would read its own output; write it elsewhere"
                )
