"""The ``beamwright_syncReport`` run facet: what a record sync did to each side.

A sync's counts already sit in the run summary (the ``reconcile`` step's decisions, the
``records_api`` sink's created/updated/deleted); this puts them where a lineage consumer looks
for a run's outcome, beside the datasets it touched: per side (``api``, ``db``) the records
created, updated and deleted, and the conflicts found (``manual``: left for a person, in the
conflicts table) with the policy that settled them. JSON Schema:
``lineage/schemas/SyncReportRunFacet.json``.
"""

from __future__ import annotations

from collections.abc import Mapping

import attr
from openlineage.client.generated.base import RunFacet

from lineage.facets import PRODUCER

SYNC_REPORT_FACET = "beamwright_syncReport"
SYNC_REPORT_SCHEMA_URL = (
    "https://raw.githubusercontent.com/beamwright/beamwright/main/lineage/schemas/"
    "SyncReportRunFacet.json#/$defs/SyncReportRunFacet"
)
SIDES = ("api", "db")
CHANGES = ("created", "updated", "deleted")


@attr.define
class SyncReportRunFacet(RunFacet):
    """Per side the records created, updated and deleted; the conflicts and their policy."""

    sides: dict[str, dict[str, int]] = attr.field(factory=dict)
    conflicts: int = 0
    manual: int = 0
    policy: str | None = None

    @staticmethod
    def _get_schema() -> str:
        return SYNC_REPORT_SCHEMA_URL


def from_decisions(counts: Mapping[str, int], policy: str) -> SyncReportRunFacet:
    """From a ``reconcile`` step's counters (``db_create``, ``api_update``, ...,
    ``conflicts_<policy>``)."""
    verbs = {"created": "create", "updated": "update", "deleted": "delete"}
    sides = {s: {c: int(counts.get(f"{s}_{verbs[c]}", 0)) for c in CHANGES} for s in SIDES}
    found = sum(int(v) for k, v in counts.items() if k.startswith("conflicts_"))
    return SyncReportRunFacet(
        sides=sides,
        conflicts=found,
        manual=int(counts.get("conflicts_manual", 0)),
        policy=policy,
        producer=PRODUCER,
    )


def from_writes(side: str, counts: Mapping[str, int]) -> SyncReportRunFacet:
    """From one side's sink counters (``created``, ``updated``, ``deleted``): a one-way sync."""
    return SyncReportRunFacet(
        sides={side: {c: int(counts.get(c, 0)) for c in CHANGES}}, producer=PRODUCER
    )
