"""Beam's "slowly updating global window side input" pattern, written once.

Every ``interval`` seconds a DoFn reads something (the credential service's stage view, a
lookup's reference files), and the newest result is what a side input shows: a
``PeriodicImpulse``, the read, a global window with a pane per element, and
``Latest.Globally().without_defaults()``, which also collapses the duplicates the local
FnApiRunner's re-emitted impulse and several workers produce. Used by
:class:`transforms.credentials.ReadSecretVersions` and
:class:`transforms.reference_refresh.RefreshReference`.

Applied step by step onto the caller's input rather than as a composite of its own, so the
callers' transform names (``Every``, the read, ``Global``, ``Latest``) stay what they were.
"""

from __future__ import annotations

import time

import apache_beam as beam
from apache_beam.transforms import combiners, trigger, window
from apache_beam.transforms.periodicsequence import PeriodicImpulse

MAX_TIMESTAMP = 2**62 / 1e6  # seconds: PeriodicImpulse's "never stop"


def periodic_latest(
    pbegin: beam.pvalue.PBegin,
    read: beam.PTransform,
    *,
    interval: float,
    stop_after: float | None = None,
    read_label: str = "Read",
) -> beam.PCollection:
    """``read`` applied to an impulse every ``interval`` seconds, the newest output kept.

    Args:
        pbegin: where the impulse starts (``pipeline`` or a PBegin).
        read: the transform applied to each tick (a ParDo of the caller's DoFn).
        interval: seconds between ticks.
        stop_after: end the impulse after this many seconds; needed on the local
            FnApiRunner, where a never-ending side input blocks the main input.
        read_label: the read's transform name.
    """
    start = time.time()
    stop = start + stop_after if stop_after is not None else MAX_TIMESTAMP
    return (
        pbegin
        | "Every" >> PeriodicImpulse(start, stop, interval, apply_windowing=False)
        | read_label >> read
        | "Global"
        >> beam.WindowInto(
            window.GlobalWindows(),
            trigger=trigger.Repeatedly(trigger.AfterCount(1)),
            accumulation_mode=trigger.AccumulationMode.DISCARDING,
        )
        | "Latest" >> combiners.Latest.Globally().without_defaults()
    )
