"""Built-in steps kinds, one module each (see :mod:`pipelines.registry`)."""
