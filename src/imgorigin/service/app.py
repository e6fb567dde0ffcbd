"""The HTTP API (``/v1``, JSON, described at ``/v1/openapi.json``), the health probes and the analysts' page.

Every /v1 endpoint needs an API key when keys are configured and is rate-limited per caller; ``/healthz``,
``/readyz``, ``/`` and ``/static/*`` are open. Every refusal is ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from imgorigin.errors import ImgoriginError
from imgorigin.records import dumps
from imgorigin.service import schemas, uploads
from imgorigin.service.auth import Caller
from imgorigin.service.config import ServeConfig
from imgorigin.service.engines import ClassifierEngine, Engines, ModelEngine, Options
from imgorigin.service.errors import ServiceError
from imgorigin.service.jobs import ATTRIBUTE, VERIFY
from imgorigin.service.logs import RequestLog
from imgorigin.service.state import Service
from imgorigin.version import __version__

logger = logging.getLogger("imgorigin.service")
#: The page's files (served from the package, no build step, nothing from elsewhere) and their content types.
PAGE_FILES = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"", "0", "false", "no", "off"}
BEARER = HTTPBearer(auto_error=False, description="Authorization: Bearer KEY")
API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: KEY")


class JSON(JSONResponse):
    """JSON as the CLI writes records: NaN and infinity become null, odd file names stay valid UTF-8."""

    def render(self, content: Any) -> bytes:
        return dumps(content).encode("utf-8")


def _service(request: Request) -> Service:
    return request.app.state.service


async def guard(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    api_key: Annotated[str | None, Depends(API_KEY)],
) -> Caller:
    """Authenticate (401 / 403) and rate-limit (429) a /v1 request."""
    service = _service(request)
    address = request.client.host if request.client else "?"
    caller = service.auth.caller(bearer.credentials if bearer else None, api_key, address)
    request.state.key = caller.key
    service.rate.check(caller.bucket)
    return caller


#: The authenticated, rate-limited caller of a /v1 endpoint.
CallerDep = Annotated[Caller, Depends(guard)]


@asynccontextmanager
async def deadline(seconds: float) -> AsyncIterator[Callable[[], float]]:
    """Bound a whole request (upload, checks, work) in time; yields the seconds left; 504 when they run out."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    try:
        async with asyncio.timeout_at(end):
            yield lambda: max(0.0, end - loop.time())
    except TimeoutError:
        raise ServiceError(504, "timeout", f"the request took longer than {seconds:g} s") from None


def _alpha(given: str | float | None, default: float) -> float:
    """The α a request gives (default: the server's), strictly between 0 and 1."""
    if given is None or given == "":
        return default
    try:
        alpha = float(given)
    except ValueError:
        alpha = math.nan
    if not 0 < alpha < 1:
        raise ServiceError(422, "invalid_alpha", f"alpha must be a number strictly between 0 and 1, got {given!r}")
    return alpha


def _flag(text: str | None, name: str) -> bool:
    """A true/false form field."""
    value = (text or "").strip().lower()
    if value not in _TRUE | _FALSE:
        raise ServiceError(422, "invalid_field", f"{name} must be true or false, got {text!r}")
    return value in _TRUE


def _target(
    engines: Engines, form: uploads.Form, kind: str, default_alpha: float
) -> tuple[ModelEngine | ClassifierEngine, Options]:
    """The engine a form names (by configured id) and the options it gives."""
    field = "model" if kind == VERIFY else "classifier"
    if form.text(field) is None:
        raise ServiceError(400, "invalid_request", f"give the {field!r} field: an id from GET /v1/{field}s")
    if kind == VERIFY:
        return engines.model(form.text("model")), Options(_alpha(form.text("alpha"), default_alpha))
    engine = engines.classifier(form.text("classifier"))
    confirm = _flag(form.text("confirm"), "confirm")
    if confirm and engine.two_stage is None:
        raise ServiceError(422, "confirm_unavailable", f"classifier {engine.id!r} is not served with confirmation")
    return engine, Options(default_alpha, confirm)


def _kind_of(form: uploads.Form) -> str:
    """A job's kind from its form: ``model`` (verify) or ``classifier`` (attribute), exactly one of them."""
    has_model, has_classifier = form.text("model") is not None, form.text("classifier") is not None
    if has_model == has_classifier:
        raise ServiceError(400, "invalid_request", "give exactly one of the fields 'model' or 'classifier'")
    return VERIFY if has_model else ATTRIBUTE


def _receive(request: Request, service: Service, *, job: bool):
    """The upload of a request, under the caps of a synchronous request or of a job."""
    limits = service.limits
    return uploads.receive(
        request,
        service.uploads_dir,
        max_bytes=limits.max_job_bytes if job else limits.max_request_bytes,
        max_file_bytes=limits.max_file_bytes,
        max_files=limits.max_job_files if job else limits.max_files,
    )


async def answer(request: Request, kind: str) -> list[dict]:
    """The records of a synchronous /v1/verify or /v1/attribute request, in upload order."""
    service = _service(request)
    engines = service.ready()
    with service.receiving():
        async with (
            deadline(service.limits.request_timeout_s) as remaining,
            _receive(request, service, job=False) as form,
        ):
            engine, options = _target(engines, form, kind, service.config.alpha)
            request.state.images = len(form.files)
            request.state.bytes = sum(upload.size for upload in form.files)
            await service.check(form.files, engine)
            order = {str(upload.path): i for i, upload in enumerate(form.files)}

            def work(cancel) -> list[dict]:
                found = []
                with engine.lock:
                    for record in engine.records(list(order), options):
                        found.append(record)
                        if cancel.is_set():
                            break
                return found

            records = await service.work.run(work, remaining())
            redact = service.redactor.with_names({str(upload.path): upload.name for upload in form.files})
    return [redact(r) for r in sorted(records, key=lambda r: order.get(r.get("path"), len(order)))]


async def submit(request: Request, caller: Caller) -> dict:
    """Store a job's uploads in its folder and queue it."""
    service = _service(request)
    engines = service.ready()
    if service.store.count_unfinished() >= service.limits.max_pending_jobs:
        raise ServiceError(
            503, "job_queue_full", "too many unfinished jobs; retry later", headers={"Retry-After": "30"}
        )
    with service.receiving():
        async with deadline(service.limits.request_timeout_s), _receive(request, service, job=True) as form:
            kind = _kind_of(form)
            engine, options = _target(engines, form, kind, service.config.alpha)
            request.state.images = len(form.files)
            request.state.bytes = sum(upload.size for upload in form.files)
            await service.check(form.files, engine)
            id = uuid.uuid4().hex
            folder = service.jobs_dir / id
            os.replace(form.folder, folder)
            try:
                service.store.create(id, caller.key, kind, engine.id, options, [u.name for u in form.files])
            except BaseException:
                os.replace(folder, form.folder)  # removed with the request's uploads
                raise
    service.runner.wake()
    logger.info("job queued", extra={"event": "job_queued", "job": id, "total": len(form.files)})
    return {"id": id, "status": "queued", "total": len(form.files), "url": f"/v1/jobs/{id}"}


def _routes(router: APIRouter) -> None:
    """The /v1 endpoints."""
    verify_form = schemas.multipart_body(
        {
            "model": {"type": "string", "description": "a model id from GET /v1/models"},
            "alpha": {"type": "number", "description": "significance level (default: the server's)"},
        },
        ["model"],
    )
    attribute_form = schemas.multipart_body(
        {
            "classifier": {"type": "string", "description": "a classifier id from GET /v1/classifiers"},
            "confirm": {"type": "boolean", "description": "two-stage: confirm bound classes by verification"},
        },
        ["classifier"],
    )
    job_form = schemas.multipart_body(
        {
            "model": {"type": "string", "description": "verify against this model id (or give classifier)"},
            "classifier": {"type": "string", "description": "attribute with this classifier id (or give model)"},
            "alpha": {"type": "number", "description": "with model: significance level"},
            "confirm": {"type": "boolean", "description": "with classifier: two-stage confirmation"},
        },
        [],
    )

    @router.post("/verify", response_model=schemas.Records, openapi_extra=verify_form)
    async def verify(request: Request, caller: CallerDep) -> JSON:
        """Did this model make these images? The records of ``imgorigin verify`` for the uploaded files."""
        return JSON({"records": await answer(request, VERIFY)})

    @router.post("/attribute", response_model=schemas.Records, openapi_extra=attribute_form)
    async def attribute(request: Request, caller: CallerDep) -> JSON:
        """Which known source made these images, if any? The records of ``imgorigin attribute [--confirm]``."""
        return JSON({"records": await answer(request, ATTRIBUTE)})

    @router.post("/jobs", status_code=202, response_model=schemas.JobCreated, openapi_extra=job_form)
    async def create_job(request: Request, caller: CallerDep) -> JSON:
        """A batch larger than a request: stored, processed in the background, resumed after a restart."""
        return JSON(await submit(request, caller), status_code=202)

    @router.get("/jobs/{id}", response_model=schemas.JobState)
    async def get_job(
        request: Request,
        id: str,
        caller: CallerDep,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    ) -> JSON:
        """A job's progress and its finished records, in upload order."""
        service = _service(request)
        service.ready()
        job = service.store.get(id)
        if job is None or (service.auth.enabled and job.owner != caller.key):
            raise ServiceError(404, "unknown_job", f"no job {id!r}")
        records = [json.loads(text) for text in service.store.records(id, offset, limit)]
        end = offset + len(records)
        return JSON(
            {**job.summary(), "offset": offset, "next_offset": end if end < job.done else None, "records": records}
        )

    @router.get("/models", response_model=schemas.ModelList)
    async def models(request: Request, caller: CallerDep) -> JSON:
        """The served models: id, image shape, calibration (N, α, threshold) and the operating point in words."""
        service = _service(request)
        engines, alpha = service.ready(), service.config.alpha
        skipped = [{"id": id, "reason": reason} for id, reason in service.config.skipped]
        return JSON(
            service.redactor({"models": [m.summary(alpha) for m in engines.models.values()], "skipped": skipped})
        )

    @router.get("/models/{id}/calibration", response_model=schemas.CalibrationScores)
    async def calibration(request: Request, id: str, caller: CallerDep, alpha: float | None = None) -> JSON:
        """A model's calibration scores and threshold, to plot an image's score against them."""
        service = _service(request)
        engine = service.ready().model(id)
        return JSON(service.redactor(engine.calibration_view(_alpha(alpha, service.config.alpha))))

    @router.get("/classifiers", response_model=schemas.ClassifierList)
    async def classifiers(request: Request, caller: CallerDep) -> JSON:
        """The served classifiers: classes, features, rejection rule and threshold, bound models, rule in words."""
        service = _service(request)
        engines, alpha = service.ready(), service.config.alpha
        return JSON(service.redactor({"classifiers": [c.summary(alpha) for c in engines.classifiers.values()]}))


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSON:
    return JSON(ServiceError(status, code, message).body(), status_code=status, headers=headers)


def _handlers(app: FastAPI) -> None:
    """Every failure as a JSON error."""

    @app.exception_handler(ServiceError)
    async def refused(request: Request, err: ServiceError) -> JSON:
        request.state.code = err.code
        return _error(err.status, err.code, err.message, err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSON:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        request.state.code = "invalid_request"
        return _error(422, "invalid_request", problems)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSON:
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, f"http_{err.status_code}")
        request.state.code = code
        return _error(err.status_code, code, str(err.detail), getattr(err, "headers", None))

    @app.exception_handler(ImgoriginError)
    async def bad_input(request: Request, err: ImgoriginError) -> JSON:
        request.state.code = "invalid_input"
        return _error(422, "invalid_input", _service(request).redactor.text(str(err)))

    @app.exception_handler(Exception)
    async def internal(request: Request, err: Exception) -> JSON:
        logger.error("internal error", exc_info=err, extra={"event": "internal_error", "path": request.url.path})
        return _error(500, "internal_error", "internal error; the server log has the details")


def _page(app: FastAPI) -> None:
    """The analysts' page and its two static files, read once from the package."""
    folder = resources.files("imgorigin.service") / "static"
    files = {name: (folder / name).read_bytes() for name in PAGE_FILES}

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return Response(files["index.html"], media_type=PAGE_FILES["index.html"])

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in files or name == "index.html":
            raise ServiceError(404, "not_found", f"no static file {name!r}")
        return Response(files[name], media_type=PAGE_FILES[name], headers={"Cache-Control": "no-cache"})


def create_app(config: ServeConfig) -> FastAPI:
    """The ASGI app for a config: models load in the background when it starts (``/readyz`` says when)."""
    service = Service(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(
        title="imgorigin",
        version=__version__,
        description="Origin attribution of AI-generated images: verification against a model, open-set "
        "attribution. Each answer is a signal with stated error rates, not proof.",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        default_response_class=JSON,
        lifespan=lifespan,
    )
    app.state.service = service
    router = APIRouter(prefix="/v1", responses=schemas.ERRORS)
    _routes(router)

    @router.get("/openapi.json", include_in_schema=False)
    async def openapi(caller: CallerDep) -> JSON:
        return JSON(app.openapi())

    app.include_router(router)

    @app.get("/healthz", response_model=schemas.Health)
    async def healthz() -> JSON:
        """The process answers (it may still be loading its models)."""
        return JSON({"status": "ok", "version": __version__})

    @app.get("/readyz", response_model=schemas.Ready, responses={503: schemas.ERRORS[503]})
    async def readyz() -> JSON:
        """Every configured model and classifier is loaded and the job runner is going."""
        engines = service.ready()
        return JSON(
            {
                "ready": True,
                "models": list(engines.models),
                "classifiers": list(engines.classifiers),
                "jobs_unfinished": service.store.count_unfinished(),
            }
        )

    _page(app)
    _handlers(app)
    app.add_middleware(RequestLog)
    return app
