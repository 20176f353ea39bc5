"""The audience checks of a spec (:func:`pipelines.audience_masks.problems`) over its column-lineage
walk: run by ``validate`` and before every build. A module of its own because the walk itself
applies audience masks, so :mod:`pipelines.audience_masks` cannot import it. No Beam."""

from __future__ import annotations

from pipelines import audience_masks
from pipelines import spec as s
from pipelines.column_lineage import walk


def audience_problems(spec: s.PipelineSpec) -> list[str]:
    """What makes the spec's per-audience masking unsound: a step reading a field masked per
    audience, or (``governance.require_audience``) an output that may carry classified fields
    without an audience. Nothing to check, and no walk, for a spec that uses no audiences."""
    gov = spec.governance
    used = gov.audiences or gov.require_audience or spec.dead_letter.audience
    if not used and not any(r.rule.when for r in audience_masks.mask_rules(spec)):
        return []
    return audience_masks.problems(spec, walk(spec, audience_masks.classified_walk_fields(spec)))
