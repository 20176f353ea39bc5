"""Kafka source and sink: pure-Python Beam transforms over confluent-kafka, Arrow batches in and out.

- :class:`ReadKafka`: a splittable DoFn, one restriction per partition, decoding JSON, Avro,
  Confluent Avro, bytes or text into Arrow tables, undecodable messages to dead letters.
- :class:`WriteKafka`: an idempotent producer writing Arrow rows as JSON or Avro, failed
  deliveries to dead letters (or failing the run).
- :func:`commit_offsets`, :func:`committed_offsets`, :func:`consumed_offsets`: group offsets
  for drivers that commit after a run (continuous local runs).
- :class:`BrokerUnreachable`: the read failed because the broker stopped answering.
- :func:`connectors.kafka.fetch.fetch_records`: records read back by offset (for dead letters
  that keep the original record), with :func:`~connectors.kafka.fetch.attributes_of`.
  without bootstrap servers.
"""

from connectors.kafka.config import KafkaConfigError
from connectors.kafka.health import BrokerUnreachable
from connectors.kafka.offsets import commit_offsets, committed_offsets, consumed_offsets
from connectors.kafka.plan import PartitionRead
from connectors.kafka.reader import Timing
from connectors.kafka.schema_registry import SchemaRegistry, SchemaRegistryError
from connectors.kafka.sink import WriteKafka
from connectors.kafka.source import ReadKafka

__all__ = [
    "BrokerUnreachable",
    "KafkaConfigError",
    "PartitionRead",
    "ReadKafka",
    "SchemaRegistry",
    "SchemaRegistryError",
    "Timing",
    "WriteKafka",
    "commit_offsets",
    "committed_offsets",
    "consumed_offsets",
]
