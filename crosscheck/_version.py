"""The installed distribution's version, read from its metadata."""

from __future__ import annotations

from importlib import metadata

# The distribution's name on the package index; the import name stays `crosscheck` (the
# name `crosscheck` there belongs to an unrelated project).
DISTRIBUTION = "crosscheck-grads"

try:
    __version__ = metadata.version(DISTRIBUTION)
except metadata.PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"
