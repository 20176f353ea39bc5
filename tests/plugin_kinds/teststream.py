"""A source kind for tests: ``teststream`` replays a Beam ``TestStream`` of Arrow batches.

Beam proves streaming behaviour with TestStream (watermark and processing-time advances on the
BundleBasedDirectRunner); this kind lets a whole *spec* (validate → window → sinks + dead
letters, as the builder wires it) run on one. The stream is registered under a name by the
test (:data:`STREAMS`) and named in the spec: ``{type: teststream, name: orders, stream: s1}``.
"""

from __future__ import annotations

from typing import Any, Literal

from pipelines.registry import Kind
from pipelines.spec_base import Name, SpecModel

STREAMS: dict[str, Any] = {}
"""Name -> apache_beam.testing.test_stream.TestStream of ``pa.Table`` elements."""


class TestStreamSourceSpec(SpecModel):
    __test__ = False  # not a pytest test class

    type: Literal["teststream"]
    name: Name
    stream: str


def build(node: TestStreamSourceSpec, ctx: Any, path: str) -> None:
    if node.stream not in STREAMS:
        raise ctx.fail(f"{path}.stream", f"no TestStream registered as '{node.stream}'")
    ctx.outputs[node.name] = ctx.pipeline | node.name >> STREAMS[node.stream]


KIND = Kind("source", TestStreamSourceSpec, build, unbounded=True)
