"""The customer API the ``http`` step's tests call: :mod:`pipelines.dev.enrich_api` (it lives
there because ``beamwright bench --http`` starts it too; one copy)."""

from pipelines.dev.enrich_api import EnrichApi, customer

__all__ = ["EnrichApi", "customer"]
