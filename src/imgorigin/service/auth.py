"""API-key authentication: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``, compared by sha256 hash.

Without configured keys every caller is let in and known by its address (for the rate limit). With keys, a request
without one is refused with 401 and a request with a key that matches none with 403.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from imgorigin.service.config import ApiKey, hash_key
from imgorigin.service.errors import ServiceError


@dataclass(frozen=True)
class Caller:
    """Who is calling: the key's name (None without auth) and the name the rate limit and job ownership use."""

    key: str | None
    bucket: str


class Authenticator:
    """Checks a request's key against the configured key hashes."""

    def __init__(self, keys: Sequence[ApiKey]) -> None:
        self.keys = tuple(keys)

    @property
    def enabled(self) -> bool:
        """Whether requests need a key."""
        return bool(self.keys)

    def caller(self, bearer: str | None, api_key: str | None, address: str) -> Caller:
        """The caller for a request's credentials, or ServiceError 401 / 403."""
        if not self.enabled:
            return Caller(None, f"address:{address}")
        given = api_key or bearer
        if not given:
            raise ServiceError(
                401,
                "missing_api_key",
                "this service needs an API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        digest = hash_key(given)
        for key in self.keys:  # each comparison in constant time
            if hmac.compare_digest(digest, key.sha256):
                return Caller(key.name, f"key:{key.name}")
        raise ServiceError(403, "invalid_api_key", "the API key given matches no key of this service")
