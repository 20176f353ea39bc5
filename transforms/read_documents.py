"""``ReadDocuments`` as a step: rows naming documents by object path (e.g. Kafka messages
``{"path": "s3://..."}``) -> one document row each, as the ``document`` source reads it.

The path comes from a row, not from a glob matched before the run, so a path that names
nothing is a fact of the data: the row is a dead letter (rule ``missing``; ``path`` for a
null or empty path), as is an unreadable document (the reader's rules: ``encrypted``,
``no_text``, ``ocr_confidence``, ``corrupt``, ``format``, ``provider_error``). The dead letter
is of the input row, with its position, so the original message (bytes, topic/partition,
offset) is recovered; the document row keeps that position too, for the same reason
downstream.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from connectors.documents.read import Remote, UnreadableDocument
from connectors.documents.source import DOCUMENT_SCHEMA, document_row, remote_reader
from connectors.records import POSITION_COLUMNS, dead_letters_for_rows, strip_positions
from transforms.step import ArrowStep, StepResult


class DocumentReader:
    """Batch processor of :class:`ReadDocumentsStep`.

    Args:
        step_name: names counters and dead letters.
        path_field: the column holding each document's path (local, file:// or any Beam
            FileSystems URI).
        min_ocr_confidence: as the ``document`` source's.
        textract, azure, google: the provider config (at most one), as the source's.
        run_id: stamped on dead letters.
    """

    def __init__(
        self,
        *,
        step_name: str,
        path_field: str = "path",
        min_ocr_confidence: float = 60.0,
        textract: Any = None,
        azure: Any = None,
        google: Any = None,
        run_id: str = "",
    ) -> None:
        self.step_name = step_name
        self.path_field = path_field
        self.min_ocr_confidence = min_ocr_confidence
        self.configs = (textract, azure, google)
        self.run_id = run_id
        self._remote: Remote | None = None

    def setup(self) -> None:
        self._remote = remote_reader(*self.configs)

    def _read(self, path: str | None) -> tuple[pa.Table | None, str, str]:
        """The document row of ``path``, or None with (rule, reason)."""
        if not path:
            return None, "path", f"{self.path_field} is null or empty: no document to read"
        location = urlparse(path).path if path.startswith("file://") else path
        try:
            with FileSystems.open(location, compression_type="uncompressed") as f:
                data = f.read()
        except (OSError, ValueError) as exc:  # BeamIOError is an OSError; ValueError: bad scheme
            return None, "missing", f"cannot open {path}: {exc}"
        try:
            return (
                strip_positions(document_row(path, data, self.min_ocr_confidence, self._remote)),
                "",
                "",
            )
        except UnreadableDocument as exc:
            return None, exc.rule, f"{path}: {exc}"

    def process(self, table: pa.Table, *side_inputs: Any) -> StepResult:
        if self.path_field not in table.column_names:
            fields = ", ".join(strip_positions(table).column_names)
            raise ValueError(f"no field {self.path_field!r} in the rows ({fields}); set path_field")
        paths = table.column(self.path_field).to_pylist()
        kept: list[int] = []
        docs: list[pa.Table] = []
        bad: list[int] = []
        rules: list[str] = []
        reasons: list[str] = []
        for i, path in enumerate(paths):
            doc, rule, reason = self._read(path)
            if doc is None:
                bad.append(i)
                rules.append(rule)
                reasons.append(reason)
            else:
                kept.append(i)
                docs.append(doc)
        rows = pa.concat_tables(docs) if docs else DOCUMENT_SCHEMA.empty_table()
        taken = table.take(pa.array(kept, pa.int64()))
        for name in POSITION_COLUMNS:
            if name in table.column_names:
                rows = rows.append_column(name, taken.column(name))
        if not bad:
            return StepResult(rows=rows)
        dead = dead_letters_for_rows(
            table.take(pa.array(bad, pa.int64())),
            errors=reasons,
            rules=rules,
            step=self.step_name,
            run_id=self.run_id,
        )
        failures: dict[str, int] = {}
        for rule in rules:
            failures[rule] = failures.get(rule, 0) + 1
        return StepResult(rows=rows, dead_letters=dead, rule_failures=failures)


class ReadDocumentsStep(ArrowStep):
    """Read the documents rows name; ``rows`` and ``dead_letters`` outputs.

    Args: those of :class:`DocumentReader`.
    """

    def __init__(self, *, step_name: str = "read_documents", **options: Any) -> None:
        super().__init__(DocumentReader(step_name=step_name, **options), step_name=step_name)
