"""Reference data that changes while a streaming job runs (slowly changing lookups).

A streaming job's ``lookup`` reads its reference files once, like a batch job, unless the
step says ``refresh``: then this transform re-reads them every ``refresh`` seconds (Beam's
"slowly updating global window side input" pattern) and the lookup joins each batch to the
newest version it has seen.

- **Versions.** A read yields a :class:`VersionedTable`: the rows and a version id made of the
  files' newest modification time and a digest of their bytes (``20260101T120000Z-3fa2...``),
  so ids sort by age and two reads of unchanged files give the same id.
- **Deduplicated.** Each reading DoFn emits a version only when it differs from the last one
  it emitted, and ``Latest.Globally().without_defaults()`` in the global window (one pane per
  element) keeps the newest: the local FnApiRunner re-emits a self-checkpointing
  ``PeriodicImpulse``'s output, and several workers may read the same version.
- **Recorded.** The lookup counts the rows it joined per version (``reference_version:<id>``
  in the step's summary stats), and the run's lineage gives the reference dataset the
  standard ``version`` facet (:func:`connectors.metrics.latest_reference_version`), so which reference data a run used is
  on record.
- **Rows the files fail to decode** at a refresh are counted (``reference_rejects``) and
  logged, not dead-lettered: the reference source's own dead letters and counts are those of
  its first read, which reconciles like any source.

On the local FnApiRunner a downstream stage only starts once its side input's stage has
finished, so the impulse must stop (``stop_after``) and the lookup sees the last version read
before the main input started; the refresh while rows flow needs a streaming runner (Flink,
Dataflow). The pattern is :func:`transforms.periodic.periodic_latest`, shared with
the credentials side input.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import apache_beam as beam
import pyarrow as pa

from connectors.metrics import NodeCounters
from connectors.records import strip_positions
from transforms.periodic import periodic_latest

log = logging.getLogger(__name__)
REJECTS_STAT = "reference_rejects"


class VersionedTable(NamedTuple):
    """Reference rows and the version id of the files they were read from."""

    version: str
    table: pa.Table


def read_version(
    paths: Sequence[str], fmt: str, options: Mapping[str, Any], batch_size: int
) -> tuple[VersionedTable, int]:
    """The files' rows as one table with their version id, and the number of records that
    failed to decode."""
    from apache_beam.io.filesystems import FileSystems

    from connectors.files.registry import make_format

    digest = hashlib.sha256()
    newest = 0.0
    for path in sorted(paths):
        meta = FileSystems.match([path])[0].metadata_list
        newest = max([newest, *(m.last_updated_in_seconds for m in meta)])
        with FileSystems.open(path) as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                digest.update(block)
    reader = make_format(fmt, **dict(options))
    tables, rejects = [], 0
    for path in sorted(paths):
        for chunk in reader.read(path, batch_size):
            tables.append(strip_positions(chunk.rows))
            rejects += len(chunk.rejects)
    table = pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})
    stamp = _dt.datetime.fromtimestamp(newest, _dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return VersionedTable(f"{stamp}-{digest.hexdigest()[:16]}", table), rejects


class _ReadReference(beam.DoFn):
    """Reads the reference files at every tick; emits a version only when it changed."""

    def __init__(
        self, step: str, paths: Sequence[str], fmt: str, options: Mapping[str, Any], batch: int
    ) -> None:
        self._step, self._paths, self._fmt = step, list(paths), fmt
        self._options, self._batch = dict(options), batch
        self._last: str | None = None

    def setup(self) -> None:
        self._counters = NodeCounters(self._step)

    def process(self, tick: Any) -> Any:
        try:
            versioned, rejects = read_version(self._paths, self._fmt, self._options, self._batch)
        except Exception as exc:  # noqa: BLE001 - keep serving the version already read
            log.warning(
                "%s: reference refresh failed, keeping the last version: %s", self._step, exc
            )
            self._counters.inc("reference_refresh_failures")
            return
        self._counters.inc("reference_reads")
        if rejects:
            self._counters.inc(REJECTS_STAT, rejects)
            log.warning("%s: %d reference record(s) could not be decoded", self._step, rejects)
        if versioned.version != self._last:
            self._last = versioned.version
            yield versioned


class RefreshReference(beam.PTransform):
    """Reference files re-read every ``refresh`` seconds, deduplicated to the newest version:
    a PCollection of one :class:`VersionedTable` per pane, for ``AsSingleton``.

    Args:
        step: the lookup step's name (for its counters).
        paths: the files (expanded globs).
        fmt, options: their file format and its options.
        refresh: seconds between reads.
        batch_size: rows per decoded chunk.
        stop_after: end the impulse after this many seconds (the local runner needs it).
    """

    def __init__(
        self,
        *,
        step: str,
        paths: Sequence[str],
        fmt: str,
        options: Mapping[str, Any] | None = None,
        refresh: float,
        batch_size: int = 100_000,
        stop_after: float | None = None,
    ) -> None:
        super().__init__()
        self._read = _ReadReference(step, paths, fmt, options or {}, batch_size)
        self._refresh = refresh
        self._stop_after = stop_after

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return periodic_latest(
            pbegin, beam.ParDo(self._read), interval=self._refresh, stop_after=self._stop_after
        )
