"""beamwright templates."""
