"""beamwright connectors/files."""
