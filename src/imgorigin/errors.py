"""The one base of every user-facing error: the CLI (and the service) catch it once and print ``error: ...``.

Each capability raises its own subclass (``ImageError``, ``CalibrationError``, ``ModelSpecError``, ...), always
with a message that names the file or option at fault; anything else escaping is a bug, not bad input.
"""

from __future__ import annotations


class ImgoriginError(Exception):
    """Bad user input or configuration: a clear message, never a traceback (CLI exit status 2)."""


class UsageError(ImgoriginError, ValueError):
    """An option or argument value that cannot work (unknown device, impossible setting, missing file)."""
