"""Records pushed by APIs, made durable in Kafka before any pipeline reads them.

- :mod:`.signature`: HMAC signatures of webhook deliveries and the replay guard.
- :mod:`.appender`: a confluent-kafka producer that returns only once Kafka has the record.
- :mod:`.webhook`: the ``beamwright ingest webhook`` HTTP server (127.0.0.1 by default).
- :mod:`.stream`: ``beamwright ingest stream``: server-sent events or JSON lines into Kafka.

A pipeline then reads the topic with the ``kafka`` source, so pushed records get the same
offsets, replays, dead letters and lineage as any topic.
"""
