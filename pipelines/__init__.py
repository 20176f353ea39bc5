"""beamwright pipelines."""
