"""Publishing from inside the pipeline, for bounded jobs that no driver waits for.

A beamwright run stages every output and its *driver* publishes them once the run's checks
passed (:mod:`connectors.committer`). A Dataflow Flex Template launcher, or a detached
bounded job, has no driver after submission, so its outputs would stay staged. With
``run.publish: pipeline`` the last step of the job does the driver's part:

- it runs once, after every sink has recorded its staging listing: each sink's finalizing
  output is a side input of one ParDo on an ``Impulse``, and a side input is complete before
  its consumer runs, on every runner;
- it checks the error threshold from counts the pipeline itself made (rows read by the
  sources, dead letters), since a worker cannot read the job's metrics;
- it publishes every output (journaled, so a crash mid-publish rolls forward at the next claim)
  or, over the threshold, drops what was staged, keeps the dead letters (published in
  ``append`` mode, kept beside the directory otherwise) and fails the job with the reason;
- a retried bundle does the same again harmlessly: an output whose manifest already names
  this run is not published twice, and dropping staging that is gone is a no-op.

Not done here, because only a driver can: the reconciliation of every node's counters (an
internal invariant, checked in every driver-run test), checks that need the whole run's
metrics (table-level expectations: :mod:`pipelines.dataset_expectations`), OpenLineage events
and committing Kafka offsets.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc

from connectors.committer import OutputCommitter
from connectors.errors import RunError
from connectors.metrics import NodeCounters
from connectors.names import CombineGlobally

log = logging.getLogger(__name__)
PUBLISH_NODE = "publish"


class ThresholdExceeded(RunError):
    """More of the rows read were dead-lettered than the run allows; nothing was published."""


def count_rows(tables: beam.PCollection, label: str) -> beam.PCollection:
    """The number of rows in a PCollection of Arrow tables (0 when empty), as one element."""
    return (
        tables
        | f"{label}/Rows" >> beam.Map(lambda t: t.num_rows)
        | f"{label}/Sum" >> CombineGlobally(beam.CombineFn.from_callable(sum))
    )


def count_rejected_at(
    dead_letters: beam.PCollection, steps: Sequence[str], label: str
) -> beam.PCollection:
    """Dead letters whose ``step`` is one of ``steps`` (the sources: records never decoded)."""
    names = pa.array(sorted(steps), pa.string())

    def rejected(table: pa.Table) -> int:
        if "step" not in table.column_names:
            return 0
        return int(pc.sum(pc.is_in(table.column("step"), value_set=names)).as_py() or 0)

    return (
        dead_letters
        | f"{label}/Rows" >> beam.Map(rejected)
        | f"{label}/Sum" >> CombineGlobally(beam.CombineFn.from_callable(sum))
    )


class _PublishAll(beam.DoFn):
    def __init__(
        self, outputs: Sequence[tuple[OutputCommitter, bool]], threshold: float, pipeline: str
    ) -> None:
        self._outputs = list(outputs)
        self._threshold = threshold
        self._pipeline = pipeline

    def process(self, _: Any, decoded: int, rejected_at_source: int, dead: int, *done: Any) -> Any:
        counters = NodeCounters(PUBLISH_NODE)
        read = decoded + rejected_at_source
        fraction = dead / read if read else 0.0
        if fraction > self._threshold:
            for committer, dead_letters in self._outputs:
                _drop(committer, dead_letters)
            counters.inc("aborted")
            raise ThresholdExceeded(
                f"{self._pipeline}: {dead:,} of {read:,} rows dead-lettered ({fraction:.2%}), "
                f"above run.error_threshold {self._threshold:.2%}; nothing was published",
                hint="the dead letters were kept and say why",
            )
        for committer, _dead_letters in self._outputs:
            _publish_once(committer)
        counters.inc("published", len(self._outputs))
        yield {"published": len(self._outputs), "rows_read": read, "dead_lettered": dead}


def _publish_once(committer: OutputCommitter) -> None:
    """Publish unless this run already did (a retried bundle). No claim: the run's claim was
    taken when the job was built, by the process that submitted it."""
    if committer.published_by_this_run() is None:
        committer.publish()


def _drop(committer: OutputCommitter, dead_letters: bool) -> None:
    """What the driver does to a failed run's output: dead letters kept, the rest dropped."""
    if dead_letters and committer.target.mode == "append":
        _publish_once(committer)
    else:
        committer.abort(keep=dead_letters)


class PublishWhenWritten(beam.PTransform):
    """Publish every staged output once all have been written, or drop them when more rows
    were dead-lettered than ``threshold`` allows (see the module docstring).

    Args:
        outputs: (committer, is the dead-letter output) of every staged output.
        done: each output's finalizing PCollection (its staging listing is written).
        decoded: rows the sources produced, one element (see :func:`count_rows`).
        rejected_at_source: records the sources could not decode, one element.
        dead_lettered: all dead letters, one element.
        threshold: ``run.error_threshold``.
        pipeline: the pipeline's name, for the message.
    """

    def __init__(
        self,
        outputs: Sequence[tuple[OutputCommitter, bool]],
        done: Sequence[beam.PCollection],
        *,
        decoded: beam.PCollection,
        rejected_at_source: beam.PCollection,
        dead_lettered: beam.PCollection,
        threshold: float,
        pipeline: str,
    ) -> None:
        super().__init__()
        self._fn = _PublishAll(outputs, threshold, pipeline)
        self._done = list(done)
        self._counts = (decoded, rejected_at_source, dead_lettered)

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        decoded, rejected, dead = (beam.pvalue.AsSingleton(c) for c in self._counts)
        done = [beam.pvalue.AsList(d) for d in self._done]
        return (
            pbegin
            | "Once" >> beam.Impulse()
            | "Publish" >> beam.ParDo(self._fn, decoded, rejected, dead, *done)
        )
