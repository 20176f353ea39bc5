"""beamwright lineage."""
