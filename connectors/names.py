"""Transforms whose every label, inner ones included, is ours and stable.

Dataflow's update and Flink's savepoints map state to transforms by their full names, so a
name that changes when a Python class is renamed or Beam is upgraded breaks both. Beam names
an unlabelled ``ParDo`` after its DoFn's class (``ParDo(_ReadFn)``), and a multi-output ParDo
(``with_outputs``) is a composite named after that label again; ``beam.Create`` and
``CombineGlobally`` (``ToList`` too) expand to a ``FlatMap`` labelled after a lambda in Beam's
``core.py``. Every application in our PTransforms is labelled explicitly; these two helpers
cover the cases a ``"Label" >>`` cannot reach. ``tests/test_transform_names.py`` holds the
main job's names.
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows
from apache_beam.typehints import typehints


def labelled_pardo(label: str, fn: beam.DoFn, *args: Any, **kwargs: Any) -> beam.ParDo:
    """``beam.ParDo(fn, *args, **kwargs)`` labelled ``label``: also the name ``with_outputs``
    gives the composite it wraps the ParDo in (``Decode/Decode``, not ``ParDo(_ReadFn)``)."""
    pardo = beam.ParDo(fn, *args, **kwargs)
    pardo.label = label
    return pardo


class CombineGlobally(beam.PTransform):
    """Beam's ``CombineGlobally`` (the same expansion: key with None, ``CombinePerKey``, which
    runners lift, unkey) with labels of our own: Beam's injects the default for an empty input
    through ``Create([None])``, whose inner labels are Beam's. Here an ``Impulse`` does.

    Args:
        fn: the CombineFn.
        defaults: emit ``fn``'s output for no input when the input is empty (one value per
            run, so only in the global window, as Beam requires); without, emit nothing.
    """

    def __init__(self, fn: beam.CombineFn, *, defaults: bool = True) -> None:
        super().__init__()
        self._fn = fn
        self._defaults = defaults

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        keyed = pcoll | "KeyWithVoid" >> beam.Map(_key_with_none).with_output_types(
            beam.typehints.KV[None, pcoll.element_type]
        )
        per_key = keyed | "CombinePerKey" >> beam.CombinePerKey(self._fn)
        unkey = beam.Map(_value)  # typed as Beam's lambda is by inference: the same coders
        if isinstance(per_key.element_type, typehints.TupleConstraint):
            unkey = unkey.with_output_types(per_key.element_type.tuple_types[1])
        combined = per_key | "UnKey" >> unkey
        if not self._defaults:
            return combined
        if pcoll.windowing.windowfn != GlobalWindows():
            raise ValueError("CombineGlobally with defaults needs the global window")
        inject = beam.Map(_or_default, beam.pvalue.AsList(combined), self._fn)
        if combined.element_type is not None:
            inject = inject.with_output_types(combined.element_type)
        return pcoll.pipeline | "Once" >> beam.Impulse() | "InjectDefault" >> inject


def _key_with_none(value: Any) -> tuple[None, Any]:
    return None, value


def _value(key_value: tuple[Any, Any]) -> Any:
    return key_value[1]


def _or_default(_impulse: bytes, combined: list[Any], fn: beam.CombineFn) -> Any:
    """The one combined value, or ``fn``'s output for no input if there was none."""
    if combined:
        (value,) = combined
        return value
    fn.setup()
    try:
        return fn.apply([])
    finally:
        fn.teardown()
