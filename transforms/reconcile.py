"""Two sides' changes of the same records, keyed together and turned into the writes that make
the sides agree: a two-way sync's decisions.

Inputs: the records API's changes (``api`` rows: key, API id, API modified time, mapped fields,
deleted flag) and the database's changes (``db`` rows: the same columns plus the row's own
modified time). Both are keyed by the record key and grouped (``CoGroupByKey``); per key the
latest change of each side is kept. For keys only the API changed, the table's current row is
read (one query per batch of keys, :class:`connectors.postgres.TableReader`) to tell a new
record from an update and the sync's own writes from users' changes.

Per key (``A`` the API's change, ``D`` the database's, ``C`` the table's current row):

- ``A`` and ``D`` with the same values (both deleted counts as the same): nothing to write but
  an acknowledgement (``db_ack``: the API id and modified time recorded in the table);
- ``A`` and ``D`` different: a conflict, settled by ``policy``: ``source_wins`` (the API),
  ``target_wins`` (the database), ``newest_wins`` (the later modified time; the API on a
  tie), or ``manual``: a ``conflict`` row holding both versions (JSON) and nothing written to
  either side;
- ``A`` only: the sync's own echo when ``A``'s modified time is the one written back into the
  table (``C.api_modified``): skipped; an acknowledgement when ``C`` already holds its values;
  else ``db_create`` / ``db_update`` / ``db_delete``;
- ``D`` only: ``api_create`` (no API id yet) / ``api_update`` / ``api_delete``.

Database writes carry ``modified = echo = A``'s modified time, so the database source's echo
filter (``echo = modified``) knows them for the sync's own; API writes carry ``echo = D``'s
modified time, which the API sink writes back with the new API modified time once the API has
taken the record. Every decision is a pure function of the two changes and the current row, so
a re-run after a crash decides the same writes again, and the writes are idempotent.

Output: one Arrow table per batch with the union of columns and ``sync_action`` (and for
conflicts ``sync_resolution``, ``api_version``, ``db_version``); filters route each action to
its sink. Counters: one per action, ``conflicts``, ``conflicts_<policy>``, ``echoes``.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc

import connectors.arrow_coder  # noqa: F401 - registers the pa.Table coder
from connectors import records
from connectors.metrics import ROWS_DEAD, ROWS_FILTERED, ROWS_IN, ROWS_OUT, NodeCounters
from connectors.names import labelled_pardo
from transforms.coerce import ARROW_TYPES
from transforms.step import DEAD_LETTERS, ROWS

POLICIES = ("source_wins", "target_wins", "newest_wins", "manual")
ACTION, RESOLUTION, API_VERSION, DB_VERSION = (
    "sync_action",
    "sync_resolution",
    "api_version",
    "db_version",
)
_TIME = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class SyncColumns:
    """The column names both sides' rows share, and the mapped fields with their types."""

    key: str
    api_id: str
    api_modified: str
    modified: str
    echo: str
    deleted: str | None  # None: deletes are not synced
    fields: tuple[tuple[str, str], ...]  # (column, type name of transforms.coerce.ARROW_TYPES)

    def schema(self) -> pa.Schema:
        return pa.schema(
            [
                (self.key, pa.string()),
                (self.api_id, pa.string()),
                *((name, ARROW_TYPES[kind]) for name, kind in self.fields),
                *([(self.deleted, pa.bool_())] if self.deleted else []),
                (self.api_modified, _TIME),
                (self.modified, _TIME),
                (self.echo, _TIME),
                (ACTION, pa.string()),
                (RESOLUTION, pa.string()),
                (API_VERSION, pa.string()),
                (DB_VERSION, pa.string()),
            ]
        )


class Decide:
    """The decision for one key (see the module docstring); no Beam, no I/O."""

    def __init__(self, columns: SyncColumns, policy: str) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, not {policy!r}")
        self.c, self.policy = columns, policy
        self.names = [name for name, _ in columns.fields]

    def gone(self, row: dict[str, Any]) -> bool:
        return bool(self.c.deleted and row.get(self.c.deleted))

    def same(self, a: dict[str, Any], b: dict[str, Any]) -> bool:
        gone_a, gone_b = self.gone(a), self.gone(b)
        if gone_a or gone_b:
            return gone_a and gone_b
        return all(_equal(a.get(n), b.get(n)) for n in self.names)

    def __call__(
        self, key: str, api: dict | None, db: dict | None, current: dict | None
    ) -> tuple[dict[str, Any] | None, str | None]:
        """(the output row or None, a counter to add besides the action's)."""
        c = self.c
        if api is not None and db is not None:
            if self.same(api, db):
                return self._ack(key, api), None
            winner = self._winner(api, db)
            if winner is None:
                return self._conflict(key, api, db), "conflicts_manual"
            if winner == "api":
                row = self._to_db(key, api, exists=True)
            else:
                row = self._to_api(key, db, api_id=api.get(c.api_id), exists=not self.gone(api))
            row[RESOLUTION] = self.policy
            return row, f"conflicts_{self.policy}"
        if api is not None:
            if current is not None and current.get(c.api_modified) == api.get(c.api_modified):
                return None, "echoes"
            if self.gone(api) and (current is None or self.gone(current)):
                return None, "deletes_already_applied"  # the API answers no time for a delete
            if current is not None and self.same(api, current):
                return self._ack(key, api), None
            return self._to_db(key, api, exists=current is not None), None
        assert db is not None
        if self.gone(db) and db.get(c.api_id) is None:
            return None, "deletes_never_synced"
        return self._to_api(
            key, db, api_id=db.get(c.api_id), exists=db.get(c.api_id) is not None
        ), None

    def _winner(self, api: dict, db: dict) -> str | None:
        if self.policy == "manual":
            return None
        if self.policy == "source_wins":
            return "api"
        if self.policy == "target_wins":
            return "db"
        return "api" if api[self.c.api_modified] >= db[self.c.modified] else "db"

    def _ack(self, key: str, api: dict) -> dict[str, Any]:
        c = self.c
        return {
            c.key: key,
            c.api_id: api.get(c.api_id),
            c.api_modified: api.get(c.api_modified),
            ACTION: "db_ack",
        }

    def _change(self, winner: dict, *, to: str, exists: bool) -> tuple[dict[str, Any], str]:
        """The winning side's field values with its deleted flag, and the action ``to`` the
        other side ("db" or "api"): both directions copy the same way, only ids and marks
        differ."""
        row = {n: winner.get(n) for n in self.names}
        gone = self.gone(winner)
        if self.c.deleted:
            row[self.c.deleted] = gone
        return row, f"{to}_delete" if gone else (f"{to}_update" if exists else f"{to}_create")

    def _to_db(self, key: str, api: dict, *, exists: bool) -> dict[str, Any]:
        c = self.c
        moment = api.get(c.api_modified)
        row, action = self._change(api, to="db", exists=exists)
        row.update(
            {
                c.key: key,
                c.api_id: api.get(c.api_id),
                c.api_modified: moment,
                c.modified: moment,
                c.echo: moment,
                ACTION: action,
            }
        )
        return row

    def _to_api(self, key: str, db: dict, *, api_id: str | None, exists: bool) -> dict[str, Any]:
        c = self.c
        row, action = self._change(db, to="api", exists=exists)
        row.update(
            {
                c.key: key,
                c.api_id: api_id if exists else None,
                c.modified: db.get(c.modified),
                c.echo: db.get(c.modified),
                ACTION: action,
            }
        )
        return row

    def _conflict(self, key: str, api: dict, db: dict) -> dict[str, Any]:
        c = self.c

        def version(side: dict, modified: str) -> str:
            body = {n: side.get(n) for n in self.names}
            body["deleted"] = self.gone(side)
            body["modified"] = side.get(modified)
            return json.dumps(body, default=_json_value, sort_keys=True)

        return {
            c.key: key,
            c.api_id: api.get(c.api_id),
            c.api_modified: api.get(c.api_modified),
            c.modified: db.get(c.modified),
            ACTION: "conflict",
            RESOLUTION: "manual",
            API_VERSION: version(api, c.api_modified),
            DB_VERSION: version(db, c.modified),
        }


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return (
            a is not None
            and b is not None
            and abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a)))
        )
    return a == b


def _json_value(value: Any) -> Any:
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    return str(value)


def _rows_by_key(
    table: pa.Table, key: str, columns: SyncColumns
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(key, row) for each row, fields cast to the sync's types (a numeric column read
    from PostgreSQL compares with the API's float) and the times to UTC timestamps (ISO 8601
    text from a source that does not type them, such as JSON lines, orders and compares as
    the sides' timestamps do)."""
    table = records.strip_positions(table)
    times = [(name, "timestamp") for name in (columns.api_modified, columns.modified, columns.echo)]
    for name, kind in [*columns.fields, *times]:
        if name in table.column_names and table.schema.field(name).type != ARROW_TYPES[kind]:
            i = table.column_names.index(name)
            table = table.set_column(i, name, pc.cast(table.column(i), ARROW_TYPES[kind]))
    for row in table.to_pylist():
        yield row.get(key), row


class _DecideFn(beam.DoFn):
    """Batches of grouped keys -> decided rows (reads the table's current rows of keys only
    the API changed)."""

    def __init__(self, decide: Decide, reader: Any, step: str, run_id: str) -> None:
        self._decide, self._reader, self._step, self._run_id = decide, reader, step, run_id

    def setup(self) -> None:
        self._counters = NodeCounters(self._step)

    def process(self, batch: Sequence[tuple[str, dict[str, list[dict]]]]) -> Iterator[Any]:
        c = self._decide.c
        latest: list[tuple[str | None, dict | None, dict | None]] = []
        for key, sides in batch:
            api = _latest(sides.get("api", []), c.api_modified)
            db = _latest(sides.get("db", []), c.modified)
            latest.append((key, api, db))
        changes = sum(len(s.get("api", [])) + len(s.get("db", [])) for _, s in batch)
        self._counters.inc(ROWS_IN, changes)
        lonely = [k for k, a, d in latest if k is not None and a is not None and d is None]
        current = self._current(lonely)
        out, dead, reasons = [], [], []
        for key, api, db in latest:
            if key is None:
                dead.extend(x for x in (api, db) if x is not None)
                reasons.extend("the record has no key" for x in (api, db) if x is not None)
                continue
            row, extra = self._decide(key, api, db, current.get(key))
            if extra:
                self._counters.inc(extra)
            if row is not None:
                self._counters.inc(row[ACTION])
                out.append(row)
        # changes without a row of their own (an echo, a change merged with the other side's
        # into one decision, a superseded one) count as filtered: rows_in reconciles
        self._counters.inc(ROWS_FILTERED, changes - len(out) - len(dead))
        if out:
            self._counters.inc(ROWS_OUT, len(out))
            yield pa.Table.from_pylist(out, self._decide.c.schema())
        if dead:
            self._counters.inc(ROWS_DEAD, len(dead))
            table = pa.Table.from_pylist([{k: str(v) for k, v in d.items()} for d in dead])
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTERS,
                records.dead_letters_for_rows(
                    table,
                    errors=reasons,
                    rules=["reconcile"] * len(dead),
                    step=self._step,
                    run_id=self._run_id,
                ),
            )

    def _current(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        if not keys:
            return {}
        found = self._reader.read(pa.table({self._decide.c.key: pa.array(keys, pa.string())}))
        c = self._decide.c
        return dict(_rows_by_key(found, c.key, c))


def _latest(rows: list[dict], modified: str) -> dict | None:
    if not rows:
        return None
    return max(rows, key=lambda r: (r.get(modified) is not None, r.get(modified) or 0))


class Reconcile(beam.PTransform):
    """``(api_rows, db_rows)`` -> decided rows (``rows``) and ``dead_letters``.

    Args:
        columns: the shared column names and field types.
        policy: one of :data:`POLICIES`.
        reader: the table's current rows by key (a :class:`connectors.postgres.TableReader`
            reading the key, API id, API modified time, deleted flag and the fields).
        step_name, run_id: counters and dead letters.
        batch: keys decided per batch (one lookup query each).
    """

    def __init__(
        self,
        columns: SyncColumns,
        policy: str,
        reader: Any,
        *,
        step_name: str,
        run_id: str = "",
        batch: int = 2_000,
    ) -> None:
        super().__init__()
        self._columns = columns
        self._fn = _DecideFn(Decide(columns, policy), reader, step_name, run_id)
        self._batch = batch

    def expand(self, sides: tuple[beam.PCollection, beam.PCollection]) -> Any:
        api, db = sides
        c = self._columns
        grouped = (
            {
                "api": api | "KeyApi" >> beam.FlatMap(_rows_by_key, c.key, c),
                "db": db | "KeyDb" >> beam.FlatMap(_rows_by_key, c.key, c),
            }
            | "ByKey" >> beam.CoGroupByKey()
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self._batch)
        )
        outputs = grouped | labelled_pardo("Decide", self._fn).with_outputs(DEAD_LETTERS, main=ROWS)
        outputs[ROWS].element_type = pa.Table
        outputs[DEAD_LETTERS].element_type = pa.Table
        return outputs
