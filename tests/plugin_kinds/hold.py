"""A step kind for tests of a *running* job: ``hold`` passes batches through, but the first
one waits until the test releases it (or fails it), so the job stays running for as long as a
test needs to watch it (heartbeats, cancel). Only for in-process runners: the gate is a
module-level event.
"""

from __future__ import annotations

import threading
from typing import Any, Literal

from lineage.columns import FieldState
from pipelines.registry import Kind
from pipelines.spec_base import StepBase

RELEASE = threading.Event()
FAIL = threading.Event()
"""Set RELEASE to let the held batch go on; set FAIL (then RELEASE) to make it raise."""


class HoldStepSpec(StepBase):
    type: Literal["hold"]


class HoldProcessor:
    def setup(self) -> None:
        pass

    def process(self, table: Any) -> Any:
        from transforms.step import StepResult

        RELEASE.wait(120)
        if FAIL.is_set():
            raise RuntimeError("held batch failed on purpose")
        return StepResult(table)


def build(node: HoldStepSpec, ctx: Any, path: str, rows: Any) -> Any:
    from transforms.step import ArrowStep

    return rows | ArrowStep(HoldProcessor(), step_name=node.name)


def lineage(node: HoldStepSpec, state: FieldState, walk: Any, path: str) -> FieldState:
    return state


KIND = Kind("step", HoldStepSpec, build, lineage=lineage)
