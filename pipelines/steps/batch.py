"""The ``batch`` step: GroupIntoBatches-style batches per key, flushed by size or by
buffering time. Rows pass through unchanged (column lineage: identity; the keys are read).

Its optional ``strategy`` takes the call strategies that mean something for a step that makes
no calls: ``streaming`` (its flush by size or time, the default) and ``burst``, each with a
``rate_limit`` on emitted batches/s for the whole job.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from lineage.columns import FieldState
from pipelines.registry import Kind
from pipelines.spec_base import StepBase, StrategySpec

_PACING = {"kind", "rate_limit", "burst"}  # what a strategy may set on this step


class BatchStepSpec(StepBase):
    """GroupIntoBatches-style batches per key, flushed by size or by buffering time."""

    type: Literal["batch"]
    key: list[str] = Field(min_length=1)
    batch_size: int = Field(ge=1)
    max_buffering_duration: float | None = Field(default=None, gt=0)
    strategy: StrategySpec | None = Field(
        default=None,
        description="streaming (default) or burst, with rate_limit: emitted batches/s for the "
        "whole job; batch_size and max_buffering_duration are the step's own.",
    )

    @model_validator(mode="after")
    def _strategy_fits(self) -> BatchStepSpec:
        strategy = self.strategy
        if strategy is None:
            return self
        if "kind" not in strategy.model_fields_set:
            strategy.kind = "streaming"  # what a batch step does; "parallel" is for calls
        if strategy.kind not in ("streaming", "burst"):
            raise ValueError(
                f"strategy kind '{strategy.kind}' paces calls; a batch step makes none: "
                "use 'streaming' or 'burst' (with rate_limit)"
            )
        extra = sorted(strategy.model_fields_set - _PACING)
        if extra:
            raise ValueError(
                f"strategy.{extra[0]} does not apply to a batch step: it takes kind, rate_limit "
                "and burst; batch_size and max_buffering_duration are the step's own fields"
            )
        return self


def build(node: BatchStepSpec, ctx: Any, path: str, rows: Any) -> Any:
    from transforms.batching import BatchByKey

    pacing: dict[str, Any] = {}
    if node.strategy is not None and node.strategy.rate_limit is not None:
        from transforms.call_strategies import StrategyError, workers_from_options

        try:
            workers = workers_from_options(ctx.pipeline.options)
        except StrategyError as exc:
            raise ctx.fail(f"{path}.strategy.rate_limit", exc.problem) from None
        pacing = {
            "rate_limit": node.strategy.rate_limit,
            "burst": node.strategy.burst,
            "workers": workers,
        }
    return rows | node.name >> BatchByKey(
        key_fields=node.key,
        batch_size=node.batch_size,
        max_buffering_duration=node.max_buffering_duration,
        step_name=node.name,
        run_id=ctx.run_id,
        **pacing,
    )


def lineage(node: BatchStepSpec, state: FieldState, walk: Any, path: str) -> FieldState:
    for j, key in enumerate(node.key):
        walk.read(f"{path}.key[{j}]", [key], state)
    return state


KIND = Kind("step", BatchStepSpec, build, lineage=lineage)
