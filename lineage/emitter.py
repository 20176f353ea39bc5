"""OpenLineage START / COMPLETE / FAIL events for a run, through openlineage-python.

Transport selection follows OpenLineage's own rules (``OPENLINEAGE__TRANSPORT__*`` variables,
``OPENLINEAGE_CONFIG`` / ``openlineage.yml``, ``OPENLINEAGE_URL``, ``OPENLINEAGE_DISABLED``);
only when none of them is set do we write to a local JSONL event log instead of the client's
console fallback, so a plain local run still leaves a lineage record to look at.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lineage.naming import dataset_name

PRODUCER = "https://github.com/beamwright/beamwright"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetRef:
    uri: str


def _configured_by_environment() -> bool:
    if any(k.startswith("OPENLINEAGE__TRANSPORT") for k in os.environ):
        return True
    if os.environ.get("OPENLINEAGE_URL") or os.environ.get("OPENLINEAGE_DISABLED"):
        return True
    if os.environ.get("OPENLINEAGE_CONFIG"):
        return True
    return (
        Path("openlineage.yml").is_file()
        or Path("~/.openlineage/openlineage.yml").expanduser().is_file()
    )


def make_client(event_log: str | None):  # noqa: ANN201 - openlineage's client, imported lazily
    """An OpenLineageClient: the standard configuration if any, else a JSONL file at ``event_log``."""
    from openlineage.client import OpenLineageClient

    if _configured_by_environment() or event_log is None:
        return OpenLineageClient()
    Path(event_log).parent.mkdir(parents=True, exist_ok=True)
    return OpenLineageClient(
        config={"transport": {"type": "file", "log_file_path": event_log, "append": True}}
    )


class RunLineage:
    """Emits the lifecycle events of one run. Emission errors are logged, never raised:
    lineage must not break the pipeline."""

    def __init__(
        self, *, namespace: str, job_name: str, run_id: str, event_log: str | None
    ) -> None:
        self.namespace = namespace
        self.job_name = job_name
        self.run_id = run_id
        self.event_log = None if _configured_by_environment() else event_log
        self._client = make_client(event_log)
        self.emitted = 0
        self.failed = 0

    def _emit(
        self,
        state: str,
        inputs: Sequence[str],
        outputs: Sequence[str],
        run_facets: dict | None = None,
    ) -> None:
        from openlineage.client.event_v2 import (
            InputDataset,
            Job,
            OutputDataset,
            Run,
            RunEvent,
            RunState,
        )

        event = RunEvent(
            eventType=getattr(RunState, state),
            eventTime=_dt.datetime.now(_dt.timezone.utc).isoformat(),
            run=Run(runId=self.run_id, facets=run_facets or {}),
            job=Job(namespace=self.namespace, name=self.job_name),
            producer=PRODUCER,
            inputs=[InputDataset(*dataset_name(u)) for u in inputs],
            outputs=[OutputDataset(*dataset_name(u)) for u in outputs],
        )
        try:
            self._client.emit(event)
            self.emitted += 1
        except Exception as exc:  # a lineage backend problem must not fail the run
            self.failed += 1
            log.warning("could not emit OpenLineage %s event: %s", state, exc)

    def start(self, inputs: Sequence[str], outputs: Sequence[str]) -> None:
        self._emit("START", inputs, outputs)

    def complete(self, inputs: Sequence[str], outputs: Sequence[str]) -> None:
        self._emit("COMPLETE", inputs, outputs)

    def fail(self, inputs: Sequence[str], outputs: Sequence[str], message: str) -> None:
        from openlineage.client.facet_v2 import error_message_run

        facet = error_message_run.ErrorMessageRunFacet(
            message=message, programmingLanguage="python"
        )
        self._emit("FAIL", inputs, outputs, {"errorMessage": facet})

    def close(self) -> None:
        try:
            self._client.close(timeout=5.0)
        except Exception as exc:  # pragma: no cover - depends on the transport
            log.warning("closing the OpenLineage client failed: %s", exc)
