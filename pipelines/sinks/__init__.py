"""Built-in sinks kinds, one module each (see :mod:`pipelines.registry`)."""
