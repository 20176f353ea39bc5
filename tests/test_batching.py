"""The batch step: per-key Arrow tables, flushed by size, by buffering time, at the end."""

from __future__ import annotations

import datetime as dt
import decimal

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import FixedWindows, TimestampedValue

from connectors.arrow_coder import ArrowTableCoder
from connectors.metrics import METRIC_NAMESPACE
from connectors.records import with_positions
from transforms.batching import BatchByKey


def batch(keys: list[str], first_offset: int) -> pa.Table:
    table = pa.table({"k": keys, "v": list(range(first_offset, first_offset + len(keys)))})
    return with_positions(table, "in.jsonl", range(first_offset, first_offset + len(keys)))


def key_and_offsets(table: pa.Table) -> list[tuple]:
    (key,) = set(table.column("k").to_pylist())
    return [(key, tuple(table.column("_bw_offset").to_pylist()))]


class TestClockAtZero:
    """GroupIntoBatches reads processing time from ``clock``; a TestStream's clock starts at 0."""

    def __call__(self) -> float:
        return 0.0


EMITTED: list[tuple] = []


def emitted(table: pa.Table) -> None:
    EMITTED.extend(key_and_offsets(table))


def run_stream(events: TestStream, transform: BatchByKey, expected: list[tuple]) -> None:
    """Run ``transform`` on ``events`` and compare the batches it emitted.

    Collected directly rather than with ``assert_that``: batches flushed when the global window
    ends carry its last timestamp, and ``assert_that``'s own GroupByKey on this runner (which
    has no timer watermark holds) would already have closed that window and dropped them.
    """
    EMITTED.clear()
    with TestPipeline(
        runner="BundleBasedDirectRunner", options=PipelineOptions(streaming=True)
    ) as p:
        out = p | events | transform
        _ = out.rows | beam.Map(emitted)
    assert sorted(EMITTED) == sorted(expected)


def test_a_key_is_flushed_when_its_batch_is_full():
    events = (
        TestStream(coder=ArrowTableCoder())
        .advance_watermark_to(0)
        .add_elements([TimestampedValue(batch(["a", "b", "a", "a"], 1), 0)])
        .add_elements([TimestampedValue(batch(["a"], 5), 1)])
        .advance_watermark_to_infinity()
    )
    run_stream(
        events,
        BatchByKey(key_fields=["k"], batch_size=2),
        # two full batches of a, then at the end of input what is left: b alone
        [("a", (1, 3)), ("a", (4, 5)), ("b", (2,))],
    )


def test_the_end_of_a_window_flushes_its_partial_batches():
    events = (
        TestStream(coder=ArrowTableCoder())
        .advance_watermark_to(0)
        .add_elements([TimestampedValue(batch(["a", "a"], 1), 1)])
        .advance_watermark_to(15)  # [0, 10) is over: its 2 rows go out, not waiting for 10
        .add_elements([TimestampedValue(batch(["a"], 3), 16)])
        .advance_watermark_to_infinity()
    )
    windowed = beam.WindowInto(FixedWindows(10))
    EMITTED.clear()
    with TestPipeline(
        runner="BundleBasedDirectRunner", options=PipelineOptions(streaming=True)
    ) as p:
        out = p | events | windowed | BatchByKey(key_fields=["k"], batch_size=10)
        _ = out.rows | beam.Map(emitted)
    assert EMITTED == [("a", (1, 2)), ("a", (3,))]  # in this order: the first went out at 15


@pytest.mark.parametrize(
    ("max_buffering", "expected"),
    [
        (5.0, [("a", (1, 2)), ("a", (3,))]),  # the wait ran out before a third row came
        (None, [("a", (1, 2, 3))]),  # no limit: the batch fills up
    ],
)
def test_a_partial_batch_is_flushed_after_max_buffering_duration(max_buffering, expected):
    events = (
        TestStream(coder=ArrowTableCoder())
        .advance_watermark_to(0)
        .add_elements([TimestampedValue(batch(["a"], 1), 0)])
        .add_elements([TimestampedValue(batch(["a"], 2), 0)])
        .advance_processing_time(6)  # the first row has now waited 6 s
        .add_elements([TimestampedValue(batch(["a"], 3), 0)])
        .advance_watermark_to_infinity()
    )
    transform = BatchByKey(
        key_fields=["k"],
        batch_size=3,
        max_buffering_duration=max_buffering,
        clock=TestClockAtZero(),
    )
    run_stream(events, transform, expected)


def test_tables_keep_their_schema_and_never_mix_schemas():
    at = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
    first = with_positions(
        pa.table(
            {
                "k": ["a", "a", "b"],
                "at": pa.array([at, None, at], pa.timestamp("ms", tz="UTC")),
                "price": pa.array(
                    [decimal.Decimal("1.50"), None, decimal.Decimal("2.25")], pa.decimal128(9, 2)
                ),
            }
        ),
        "orders.jsonl",
        [1, 2, 3],
    )
    second = first.slice(0, 1).append_column("extra", pa.array([True]))  # a producer added a field
    p = TestPipeline(runner="FnApiRunner")
    out = (
        p
        | beam.Create([first, second]).with_output_types(pa.Table)
        | BatchByKey(key_fields=["k"], batch_size=10, step_name="per_customer")
    )

    def describe(table: pa.Table) -> list[tuple]:
        return [(str(table.schema), tuple(tuple(r.values()) for r in table.to_pylist()))]

    def expected(table: pa.Table, rows: list[int]) -> tuple:
        return (str(table.schema), tuple(tuple(r.values()) for r in table.take(rows).to_pylist()))

    assert_that(
        out.rows | beam.FlatMap(describe),
        equal_to([expected(first, [0, 1]), expected(first, [2]), expected(second, [0])]),
    )
    result = p.run()
    result.wait_until_finish()
    query = result.metrics().query(MetricsFilter().with_namespace(METRIC_NAMESPACE))
    counts = {c.key.metric.name: c.committed for c in query["counters"]}
    assert (counts["per_customer/rows_in"], counts["per_customer/rows_out"]) == (4, 4)
    assert counts["per_customer/batches_out"] == 3


def test_rows_without_the_key_field_are_dead_lettered():
    p = TestPipeline(runner="FnApiRunner")
    out = (
        p
        | beam.Create([batch(["a"], 1), batch(["b"], 2).drop_columns(["k"])]).with_output_types(
            pa.Table
        )
        | BatchByKey(key_fields=["k"], batch_size=10)
    )
    assert_that(
        out.rows | "Rows" >> beam.FlatMap(key_and_offsets), equal_to([("a", (1,))]), label="rows"
    )
    assert_that(
        out.dead_letters
        | beam.FlatMap(
            lambda t: [(r["rule"], r["offset"], r["errorMessage"]) for r in t.to_pylist()]
        ),
        equal_to([("missing_field", 2, "key field(s) k missing from this batch")]),
        label="dead",
    )
    p.run().wait_until_finish()


def test_settings_are_checked():
    with pytest.raises(ValueError, match="batch_size"):
        BatchByKey(key_fields=["k"], batch_size=0)
    with pytest.raises(ValueError, match="max_buffering_duration"):
        BatchByKey(key_fields=["k"], batch_size=5, max_buffering_duration=0)
