"""What leaves the server: server-side paths in records and summaries are replaced by public names.

Records come from the library exactly as the CLI writes them; the only change is that every server path in them
(an upload's stored file, a model file, a calibration or classifier folder, the work and cache folders) is
replaced by the name the client knows (the uploaded file name, the configured id).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Redactor:
    """Replaces server-side strings by public names in every string of a JSON-like value."""

    def __init__(self, replacements: Mapping[str, str]) -> None:
        # longest first, so that a path is replaced before any shorter path that is a prefix of it
        self.pairs = sorted(((old, new) for old, new in replacements.items() if old), key=lambda p: -len(p[0]))

    def with_names(self, names: Mapping[str, str]) -> Redactor:
        """This redactor plus stored-file path -> client file name pairs (one request's or job's uploads)."""
        return Redactor({**dict(self.pairs), **names})

    def text(self, value: str) -> str:
        """One string with every server-side string replaced."""
        for old, new in self.pairs:
            if old in value:
                value = value.replace(old, new)
        return value

    def __call__(self, value: Any) -> Any:
        """A JSON-like value (dicts, lists, strings, numbers) with every string redacted, keys included."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(k) if isinstance(k, str) else k: self(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        return value
