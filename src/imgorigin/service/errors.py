"""Every refusal of the service: an HTTP status, a stable code and a message, sent as ``{"error": {...}}``."""

from __future__ import annotations

from pydantic import BaseModel


class ServiceError(Exception):
    """A request refused with ``status``; ``code`` is stable (clients branch on it), ``message`` is for people."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def body(self) -> dict:
        """The JSON body of the refusal."""
        return {"error": {"code": self.code, "message": self.message}}


class ErrorDetail(BaseModel):
    """What was refused and why."""

    code: str
    message: str


class ErrorBody(BaseModel):
    """The body of every refusal (4xx and 5xx)."""

    error: ErrorDetail
