"""The file bench's case names and the ``--cases`` argument type, apart from the bench itself.

Why a module of its own: the CLI's parser lists the cases in ``bench --help`` and checks
``--cases`` when it parses, so it is built on every ``beamwright`` start; importing
:mod:`pipelines.dev.bench` for that (json, statistics, subprocess, resource, ...) cost ~21 ms
of every start, this module ~0.5 ms.
"""

from __future__ import annotations

import argparse

CASES = (
    "parquet",
    "parquet_lineage",
    "jsonl",
    "baseline",
    "demo",
    "validate_only",
    "window",
    "gx_suite",
    "gx_rules",
    "audience_masks",
    "plain_masks",
    "join",
)


def case_names(text: str) -> list[str]:
    """``--cases``: case names separated by commas, each one of :data:`CASES`."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in CASES:
            raise argparse.ArgumentTypeError(f"unknown case {name!r}; cases: {', '.join(CASES)}")
    return names
