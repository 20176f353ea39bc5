"""The splittable reader's restriction and watermark: one offset range per partition.

A partition's restriction is an ``OffsetRange`` ``[start, stop)``; ``stop`` is ``UNBOUNDED``
when nothing ends the read. The tracker is Beam's offset tracker, made aware that such a range
has no end (so draining a pipeline stops the read instead of reading forever). The watermark
is per partition and monotonic; the reader moves it explicitly (see
:mod:`connectors.kafka.reader`), because dead letters are outputs too and carry no event time
worth following.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.io.iobase import RestrictionProgress, WatermarkEstimator
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import WatermarkEstimatorProvider
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Timestamp

from connectors.kafka.plan import PartitionRead

UNBOUNDED = 2**63 - 1
"""The stop of a restriction that has no end."""


class PartitionTracker(OffsetRestrictionTracker):
    """An offset-range tracker that knows an ``UNBOUNDED`` stop means no end (for draining)."""

    def is_bounded(self) -> bool:
        return self.stop_position() != UNBOUNDED

    def try_split(self, fraction_of_remainder: float) -> tuple[OffsetRange, OffsetRange] | None:
        """Split as Beam's offset tracker does, except that a range with no end is split where
        a checkpoint would split it, whatever the fraction.

        A fraction of an endless remainder is an offset no partition will reach for ages
        (about 4.6e18 for 0.5): the primary would then look bounded, so draining would read it
        forever, its size would be a huge false backlog, and the residual would wait for that
        offset. Java's ``GrowableOffsetRangeTracker`` without an end estimate splits there too.
        """
        if not self.is_bounded():
            fraction_of_remainder = 0.0
        return super().try_split(fraction_of_remainder)

    def current_progress(self) -> RestrictionProgress:
        if self.is_bounded():
            return super().current_progress()
        return RestrictionProgress(fraction=0.0)


class PartitionRestrictions(RestrictionProvider):
    """One restriction per partition; never split up front (a partition is read in order)."""

    def initial_restriction(self, read: PartitionRead) -> OffsetRange:
        return OffsetRange(read.start, UNBOUNDED if read.stop is None else read.stop)

    def create_tracker(self, restriction: OffsetRange) -> PartitionTracker:
        return PartitionTracker(restriction)

    def restriction_size(self, read: PartitionRead, restriction: OffsetRange) -> int:
        if restriction.stop == UNBOUNDED:  # the backlog when planned is the best estimate
            return max(1, read.log_end - restriction.start)
        return restriction.size()


class PartitionWatermark(WatermarkEstimator):
    """A monotonic watermark the reader moves: to each batch's earliest event time, and to
    ``now - idle delay`` when the partition is caught up and idle."""

    def __init__(self, state: Timestamp | None) -> None:
        self._watermark = MIN_TIMESTAMP if state is None else state

    def observe_timestamp(self, timestamp: Timestamp) -> None:
        """Outputs do not move it: dead letters carry no event time worth following."""

    def current_watermark(self) -> Timestamp:
        return self._watermark

    def get_estimator_state(self) -> Timestamp:
        return self._watermark

    def advance_to(self, timestamp: Timestamp) -> None:
        if timestamp > self._watermark:
            self._watermark = timestamp


class PartitionWatermarks(WatermarkEstimatorProvider):
    def initial_estimator_state(self, element: PartitionRead, restriction: OffsetRange) -> None:
        return None

    def create_watermark_estimator(self, estimator_state: Timestamp | None) -> PartitionWatermark:
        return PartitionWatermark(estimator_state)


TRACKER_PARAM = beam.DoFn.RestrictionParam(PartitionRestrictions())
WATERMARK_PARAM = beam.DoFn.WatermarkEstimatorParam(PartitionWatermarks())
