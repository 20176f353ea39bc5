"""beamwright transforms."""
