"""The installed package version, in a leaf module so that every record can name it without importing the root."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("imgorigin")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+local"
