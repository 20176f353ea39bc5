"""The ``mask`` step: protect PII fields in Arrow batches (see :mod:`transforms.masking`).

Keys and salts are given as secret *references* and resolved in ``setup`` on the worker, so no
secret value is ever pickled into the pipeline graph, its options or a generated file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from connectors.secrets import SecretRef, resolved_early
from transforms.masking import MaskRule, check_rule, mask_table
from transforms.step import ArrowStep, StepResult

SECRET_OPTIONS = ("key", "salt")


class Masker:
    """Batch processor for :class:`Mask`.

    Args:
        fields: one mapping per masked field: ``field``, ``strategy`` and strategy options;
            ``key``/``salt`` options are :class:`connectors.secrets.SecretRef` objects.
    """

    def __init__(self, *, fields: Sequence[Mapping[str, Any]]) -> None:
        self.fields = [dict(f) for f in fields]
        for spec in self.fields:
            for option in SECRET_OPTIONS:
                if option in spec and not hasattr(spec[option], "resolve"):
                    raise TypeError(
                        f"mask option '{option}' for field '{spec['field']}' must be a secret "
                        "reference (EnvSecret/FileSecret), not a literal value"
                    )
        # check every option now, before a pipeline runs (not while planning: the secrets are
        # the workers'); the resolved secrets are dropped
        if resolved_early():
            self._resolve()
        self._rules: list[MaskRule] | None = None

    def _resolve(self) -> list[MaskRule]:
        rules = []
        for spec in self.fields:
            options = {k: v for k, v in spec.items() if k not in ("field", "strategy")}
            for option in SECRET_OPTIONS:
                ref: SecretRef | None = options.get(option)
                if ref is not None:
                    options[option] = ref.resolve().reveal()
            rule = MaskRule(field=spec["field"], strategy=spec["strategy"], options=options)
            check_rule(rule)
            rules.append(rule)
        return rules

    def setup(self) -> None:
        self._rules = self._resolve()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_rules"] = None  # resolved secrets stay on the worker that resolved them
        return state

    def process(self, table: pa.Table, *side_inputs: Any) -> StepResult:
        if self._rules is None:
            self.setup()
        return StepResult(rows=mask_table(table, self._rules))


class Mask(ArrowStep):
    """Mask PII fields: redact, partial, hash, pseudonymize, bucket, email_domain."""

    def __init__(self, *, fields: Sequence[Mapping[str, Any]], step_name: str = "mask") -> None:
        super().__init__(Masker(fields=fields), step_name=step_name)
