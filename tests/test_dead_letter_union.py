"""Dead letters of several steps merge whole with two threaded workers (``--workers 2``).

The failure this guards against: "Error decoding input stream ... DeadLetters/Union/Read" on
1M-row runs. Beam's threaded workers flushed output streams from a 1-second timer thread, so a
tick that fell while a big Arrow table was being encoded sent the element's header and body as
separate chunks, which the runner then dealt to different workers (see
``pipelines.direct_runner``). The elements here take longer than that tick to encode (a
coder that waits 1.2 s, standing in for a table of a few hundred MB), so with the time-based
flush every one of them is cut: the test failed on every run before the fix.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.coders import coder_impl
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from connectors import records
from connectors.arrow_coder import ArrowTableCoder
from pipelines.runners import pipeline_options
from pipelines.spec import RunSettings

ENCODE_SECONDS = 1.2  # longer than Beam's default 1 s time-based flush interval


@dataclass(frozen=True)
class SlowTable:
    """A dead-letter table whose encoding takes as long as a very large table's would."""

    table: pa.Table


class SlowTableCoder(beam.coders.Coder):
    def _create_impl(self) -> coder_impl.CoderImpl:
        arrow = ArrowTableCoder()

        def encode(value: SlowTable) -> bytes:
            time.sleep(ENCODE_SECONDS)  # the GIL is free meanwhile, as in Arrow's IPC writer
            return arrow.encode(value.table)

        return coder_impl.CallbackCoderImpl(
            encode, lambda data: SlowTable(arrow.decode(data)), lambda v: v.table.nbytes
        )

    def to_type_hint(self) -> type:
        return SlowTable

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


beam.coders.registry.register_coder(SlowTable, SlowTableCoder)


def _dead_letters(step: str, rows: pa.Table):
    def make(_: bytes) -> list[SlowTable]:
        letters = records.dead_letters_for_rows(
            rows, errors=["bad"] * rows.num_rows, rules=["r"] * rows.num_rows, step=step, run_id="t"
        )
        return [SlowTable(letters)]

    return make


@pytest.mark.slow
def test_dead_letters_of_two_stages_merge_whole_with_two_workers() -> None:
    """Two steps' dead letters (from rows of different schemas, produced in different stages)
    through one Flatten, read by two threaded workers, with the project's runner profile."""
    settings = RunSettings(direct_num_workers=2)
    orders = records.with_positions(pa.table({"id": [1, 2, 3]}), "orders.jsonl", [1, 2, 3])
    people = pa.table({"name": ["a", "b"], "age": [1.5, None]})
    with TestPipeline(options=pipeline_options(settings, "dead-letter-union")) as p:
        first = (
            p
            | "ImpulseA" >> beam.Impulse()
            | "validate"
            >> beam.FlatMap(_dead_letters("validate", orders)).with_output_types(SlowTable)
        )
        second = (
            p
            | "ImpulseB" >> beam.Impulse()
            | "Spread" >> beam.Reshuffle()  # another stage, as a later step's would be
            | "mask" >> beam.FlatMap(_dead_letters("mask", people)).with_output_types(SlowTable)
        )
        merged = (first, second) | "DeadLetters/Union" >> beam.Flatten()
        steps = merged | beam.FlatMap(lambda t: t.table.column("step").to_pylist())
        assert_that(steps, equal_to(["validate"] * 3 + ["mask"] * 2))
