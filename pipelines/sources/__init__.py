"""Built-in sources kinds, one module each (see :mod:`pipelines.registry`)."""
