"""beamwright connectors."""
