"""HTTP plumbing of the control API: one error shape, JSON bodies, query parameters.

Every error leaves the API as ``{"error": {"code": ..., "message": ...}}`` (422 adds
``problems``: ``[{"path", "message"}]``). Unexpected exceptions become a 500 without
internals; the traceback goes to the log only.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import structlog
from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway.errors import DeliveryError, SwitchboardError

log = structlog.get_logger("gateway.control")

Model = TypeVar("Model", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: ``gateway.control.max_body_kb`` as the app was built with it (for the 413 message).
MAX_BODY_KB = web.AppKey("switchboard.max_body_kb", int)

#: HTTP status per :attr:`SwitchboardError.code`; anything else on purpose is a 400.
STATUS_BY_CODE = {
    "unknown_provider": 404,
    "unknown_account": 404,
    "not_found": 404,
    "invalid_target": 422,
    "invalid_request": 422,
    "config_invalid": 422,
    "payload_too_large": 413,
    "account_disabled": 409,
    "shutting_down": 503,
    "outbox_closed": 503,
    "unavailable": 503,
}


class ApiError(SwitchboardError):
    """An error the API reports as is: ``code`` and HTTP ``status`` chosen by the caller."""

    def __init__(self, status: int, code: str, message: str, **extra: Any):
        self.status = status
        self.code = code
        self.extra = extra
        super().__init__(message)


def error_response(status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None,
                   **extra: Any) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, **extra}}, status=status,
                             headers=headers)


def status_for(exc: SwitchboardError) -> int:
    if isinstance(exc, ApiError):
        return exc.status
    if isinstance(exc, DeliveryError) and getattr(exc, "record", None) is not None:
        return 502  # accepted, then refused by the provider: the message is in dead letters
    return STATUS_BY_CODE.get(exc.code, 400)


def switchboard_error_response(exc: SwitchboardError) -> web.Response:
    extra: dict[str, Any] = dict(exc.extra) if isinstance(exc, ApiError) else {}
    record = extra.pop("record", None) or getattr(exc, "record", None)
    body: dict[str, Any] = {"error": {"code": exc.code, "message": str(exc), **extra}}
    if record is not None:
        # A message the outbox accepted (dead, or still queued): the record, as in a success.
        body["message"] = record.to_dict() if hasattr(record, "to_dict") else record
    return web.json_response(body, status=status_for(exc))


def _http_error_message(exc: web.HTTPException, request: web.Request) -> tuple[str, str]:
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        limit_kb = request.config_dict.get(MAX_BODY_KB, 0)
        return "body_too_large", (f"request body is larger than {limit_kb} KiB "
                                  "(gateway.control.max_body_kb)")
    if isinstance(exc, web.HTTPNotFound):
        return "not_found", f"no such endpoint: {request.method} {request.path}"
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return "method_not_allowed", f"{request.method} is not allowed on {request.path} (allowed: {allowed})"
    text = exc.text or ""
    default = f"{exc.status}: {exc.reason}"
    message = exc.reason if not text or text.strip() == default else text.strip()
    return exc.reason.lower().replace(" ", "_"), message


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into the one JSON error shape (provider webhooks keep their own)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or request.path.startswith("/hooks/"):
            raise
        code, message = _http_error_message(exc, request)
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate")}
        return error_response(exc.status, code, message, headers=headers)
    except SwitchboardError as exc:
        return switchboard_error_response(exc)
    except Exception:  # noqa: BLE001 - never leak internals to a client
        log.exception("control.request_failed", method=request.method, path=request.path)
        return error_response(500, "internal", "internal error; see the daemon log")


async def read_json(request: web.Request) -> Any:
    """The parsed JSON body; 400 with the parser's message, 413 over ``max_body_kb``."""
    raw = await request.read()
    if not raw.strip():
        raise ApiError(400, "malformed_json", "the request body is empty; send a JSON object")
    try:
        return json.loads(raw)
    except UnicodeDecodeError as exc:
        raise ApiError(400, "malformed_json", f"malformed JSON body: not UTF-8 ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"malformed JSON body: {exc}") from None


async def read_model(request: web.Request, model: type[Model]) -> Model:
    """Parse and validate the body as ``model``: 400 for bad JSON, 422 naming each field."""
    data = await read_json(request)
    if not isinstance(data, dict):
        raise ApiError(400, "malformed_json", f"the request body must be a JSON object, not {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def validation_error(exc: ValidationError) -> ApiError:
    problems = []
    for err in exc.errors():
        path = ".".join(str(part) for part in err["loc"]) or "body"
        message = "unknown field" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        problems.append({"path": path, "message": message})
    text = "; ".join(f"{p['path']}: {p['message']}" for p in problems)
    return ApiError(422, "invalid_request", text, problems=problems)


def query_flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name)
    if value is None:
        return False
    lowered = value.strip().lower()
    if lowered in ("", "1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ApiError(422, "invalid_request", f"{name}: must be 1 or 0, got {value!r}",
                   problems=[{"path": name, "message": "must be 1 or 0"}])


def query_int(request: web.Request, name: str, default: int, *, low: int, high: int) -> int:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        message = f"must be an integer from {low} to {high}"
        raise ApiError(422, "invalid_request", f"{name}: {message}, got {value!r}",
                       problems=[{"path": name, "message": message}])
    return number
