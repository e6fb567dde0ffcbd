"""The shapes of the service's answers and uploads, for the OpenAPI schema (records are the library's own)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from imgorigin.service.errors import ErrorBody
from imgorigin.service.uploads import IMAGES_FIELD


class Records(BaseModel):
    """One record per uploaded image, in upload order, exactly as ``imgorigin verify`` / ``attribute`` write them
    (``path`` is the uploaded file name)."""

    records: list[dict[str, Any]]


class JobCreated(BaseModel):
    """A job accepted for the background: poll ``url`` for progress and records."""

    id: str
    status: str
    total: int
    url: str


class JobState(BaseModel):
    """A job's progress and its finished records (``offset``/``limit`` page through them in upload order)."""

    id: str
    status: str = Field(description="queued, running, done or failed")
    kind: str = Field(description="verify or attribute")
    target: str = Field(description="the model or classifier id")
    alpha: float
    confirm: bool
    total: int
    done: int
    error: str | None
    created: float
    updated: float
    offset: int
    next_offset: int | None = Field(description="offset of the next page of records, or null when there is none")
    records: list[dict[str, Any]]


class SkippedModel(BaseModel):
    """A model left out of the configuration on purpose, and why."""

    id: str
    reason: str


class ModelList(BaseModel):
    """The served models with their calibration and operating point in words."""

    models: list[dict[str, Any]]
    skipped: list[SkippedModel]


class ClassifierList(BaseModel):
    """The served open-set classifiers, their rule in words, and the models bound for two-stage confirmation."""

    classifiers: list[dict[str, Any]]


class CalibrationScores(BaseModel):
    """A model's calibration scores, the threshold at α and the operating point in words."""

    id: str
    alpha: float
    threshold: float | None
    floor: float
    scores: list[float]
    reference_scores: list[float] | None
    operating_point: str


class Health(BaseModel):
    """The process answers."""

    status: str
    version: str


class Ready(BaseModel):
    """Every configured model and classifier is loaded."""

    ready: bool
    models: list[str]
    classifiers: list[str]
    jobs_unfinished: int


#: Refusals any /v1 endpoint may answer, documented once.
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "malformed request (bad_upload, no_images, unexpected_field, field_too_large, invalid_request)"),
        (401, "missing_api_key"),
        (403, "invalid_api_key"),
        (404, "unknown_model, unknown_classifier, unknown_job"),
        (413, "request_too_large, file_too_large, too_many_files"),
        (415, "unsupported_media_type, unsupported_format (sniffed from the bytes)"),
        (422, "empty_file, too_many_pixels, undecodable_image, invalid_alpha, invalid_field, confirm_unavailable"),
        (429, "rate_limited (Retry-After)"),
        (503, "busy (Retry-After), job_queue_full, not_ready, load_failed"),
        (504, "timeout"),
    )
}


def multipart_body(fields: dict[str, dict[str, Any]], required: list[str]) -> dict[str, Any]:
    """``openapi_extra`` describing a multipart upload: these text fields plus one or more image files."""
    images = {
        "type": "array",
        "items": {"type": "string", "format": "binary"},
        "description": "one or more images (PNG, JPEG, WebP, BMP, TIFF; the format is read from the bytes)",
    }
    schema = {
        "type": "object",
        "properties": {**fields, IMAGES_FIELD: images},
        "required": [*required, IMAGES_FIELD],
    }
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}
