"""The output columns of a ``join`` step, decided from the two inputs' field names alone.

Kept apart from :mod:`transforms.join` (which imports Beam and pyarrow) because the spec's
column-lineage walk predicts the same names without running anything: one rule, used by the
transform on real batches and by lineage on field names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WINDOW_COLUMNS = ("window_start", "window_end")
HIDDEN_PREFIX = "_bw_"  # source positions (_bw_source, _bw_offset): kept from the left only


@dataclass(frozen=True)
class SideColumns:
    """What one side contributes: ``name`` (its input, for clash prefixes), its key fields,
    the fields to keep (None: all) and the prefix put before them."""

    name: str
    keys: tuple[str, ...]
    fields: tuple[str, ...] | None = None
    prefix: str = ""


def output_columns(
    left: SideColumns,
    right: SideColumns,
    left_names: Sequence[str],
    right_names: Sequence[str],
    *,
    windowed: bool,
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(left, right)``: each a list of (input field, output column).

    * A side keeps its ``fields`` (default: every field it has), each named ``prefix + field``.
    * A right key with the same name as the left key it pairs with is left out: it would
      repeat the left one (inner join) or be null where the left one is not (left join).
    * Source positions (``_bw_source``/``_bw_offset``) come from the left rows only, so a
      joined row points at the left record it came from.
    * A name already taken (by a left column, or ``window_start``/``window_end`` of a
      windowed join) is prefixed with the side's input name and ``_`` instead, so no column
      silently replaces another; a name still taken then is an error.
    """
    taken: set[str] = set(WINDOW_COLUMNS) if windowed else set()
    out: list[list[tuple[str, str]]] = []
    for side, names, drop in (
        (left, left_names, set()),
        (right, right_names, {r for lk, r in zip(left.keys, right.keys, strict=True) if lk == r}),
    ):
        chosen: list[tuple[str, str]] = []
        wanted = side.fields if side.fields is not None else names
        for name in wanted:
            if name.startswith(HIDDEN_PREFIX):
                if side is left and name not in taken:
                    chosen.append((name, name))
                    taken.add(name)
                continue
            if side.fields is None and name in drop:
                continue
            column = side.prefix + name
            if column in taken:
                column = f"{side.name}_{name}"
            if column in taken:
                raise ValueError(
                    f"join output column '{column}' from {side.name}.{name} is already taken; "
                    f"give {side.name} a 'prefix' or list its 'fields'"
                )
            taken.add(column)
            chosen.append((name, column))
        out.append(chosen)
    return out[0], out[1]
