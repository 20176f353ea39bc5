"""beamwright pipelines."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("beamwright")  # the one place it is written is pyproject.toml
except PackageNotFoundError:  # a source tree used without installing it
    __version__ = "0+unknown"
