"""The HTTP application: TF Serving's REST API, ``:detect``, ``/healthz``, ``/metrics`` and the web page.

Starlette (routing, requests, multipart) on uvicorn (the ASGI server): see the README's "Serving" section
for why. Request bodies are read with a size limit and a deadline; JSON parsing, image decoding and
response encoding run in a thread pool; inference goes through one :class:`MicroBatcher` per model.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from odkit.serve.batching import MicroBatcher
from odkit.serve.metrics import Metrics
from odkit.serve.models import VERSION, ServedModel, load_model
from odkit.serve.tfserving import ApiError, decode_image_bytes, parse_predict, predict_response

log = logging.getLogger("odkit.serve")
ENV_OPTIONS = "ODKIT_SERVE_OPTIONS"  # JSON ServeOptions for --workers > 1 (uvicorn starts each worker)
MAX_FILES = 32
_PATH_RE = re.compile(
    r"^(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?:(?P<meta>/metadata)|:(?P<verb>[A-Za-z]+))?$"
)
STATIC = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/style.css": ("style.css", "text/css; charset=utf-8")}


@dataclass
class ServeOptions:
    """Everything ``odkit serve`` was asked for (JSON-serializable, handed to worker processes)."""

    models: list[tuple[str, str]] = field(default_factory=list)  # (name, export dir)
    host: str = "127.0.0.1"
    port: int = 8501
    workers: int = 1
    max_batch: int = 8
    batch_timeout_ms: float = 2.0
    max_body_mb: float = 20.0
    max_pixels: int = 40_000_000
    request_timeout_s: float = 30.0
    num_threads: int = 0
    max_connections: int = 256

    @classmethod
    def from_env(cls) -> ServeOptions:
        raw = json.loads(os.environ[ENV_OPTIONS])
        raw["models"] = [tuple(m) for m in raw["models"]]
        return cls(**raw)

    def threads_per_worker(self) -> int:
        return self.num_threads or max(1, (os.cpu_count() or 1) // max(1, self.workers))

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)


class ServeState:
    """The loaded models, their batchers, thread pools and metrics of one server process."""

    def __init__(self, opts: ServeOptions, models: dict[str, ServedModel]) -> None:
        self.opts = opts
        self.models = models
        self.metrics = Metrics()
        self.decode_pool = ThreadPoolExecutor(max(2, min(8, os.cpu_count() or 1)), thread_name_prefix="odkit-decode")
        self.infer_pool = ThreadPoolExecutor(max(1, len(models)), thread_name_prefix="odkit-infer")
        self.batchers: dict[str, MicroBatcher] = {}
        for name, m in models.items():
            self.batchers[name] = MicroBatcher(
                m.detector.run_batch, max_batch=m.max_batch, timeout_s=opts.batch_timeout_ms / 1000,
                executor=self.infer_pool, on_batch=lambda n, _s, name=name: self.metrics.batch(name, n),
            )
        self.static = {path: (resources.files("odkit.serve").joinpath("static", f).read_bytes(), ctype)
                       for path, (f, ctype) in STATIC.items()}

    async def in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.decode_pool, fn, *args)

    def model(self, name: str, version: str | None = None) -> ServedModel:
        if name not in self.models:
            raise ApiError(404, f"Servable not found for request: Latest({name}) "
                                f"(this server has: {', '.join(self.models)})")
        if version not in (None, VERSION):
            raise ApiError(404, f"Servable not found for request: Specific({name}, {version})")
        return self.models[name]


def load_models(opts: ServeOptions) -> dict[str, ServedModel]:
    threads = opts.threads_per_worker()
    return {name: load_model(name, path, max_batch=opts.max_batch, num_threads=threads, max_pixels=opts.max_pixels)
            for name, path in opts.models}


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The request body, refusing more than ``limit`` bytes (413) or a body slower than ``timeout_s`` (408)."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise ApiError(400, f"bad Content-Length {length[:40]!r}")
        if int(length) > limit:
            raise ApiError(413, f"request body is {int(length)} bytes, over the {limit} byte limit (--max_body_mb)")

    async def _read() -> bytes:
        buf = bytearray()
        async for chunk in request.stream():
            buf += chunk
            if len(buf) > limit:
                raise ApiError(413, f"request body is over the {limit} byte limit (--max_body_mb)")
        return bytes(buf)

    try:
        return await asyncio.wait_for(_read(), timeout_s)
    except asyncio.TimeoutError:
        raise ApiError(408, f"request body not received within {timeout_s:g} s") from None
    except ClientDisconnect:
        raise ApiError(400, "client disconnected before sending the whole body") from None


def _first_line(exc: BaseException) -> str:
    return ((str(exc).strip().splitlines() or [type(exc).__name__])[0])[:300]


async def _infer(state: ServeState, model: ServedModel, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    batcher = state.batchers[model.name]
    try:
        return list(await asyncio.gather(*(batcher.submit(img) for img in images)))
    except ApiError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime refused this input; the server keeps running
        raise ApiError(400, f"inference failed on this input: {type(exc).__name__}: {_first_line(exc)}") from None


def _query_number(request: Request, key: str, default: float, lo: float, hi: float, integer: bool = False) -> float:
    raw = request.query_params.get(key)
    if raw is None:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise ApiError(400, f"?{key}={raw[:40]!r} is not a number") from None
    if not lo <= value <= hi:
        raise ApiError(400, f"?{key}={value} must be between {lo:g} and {hi:g}")
    return value


async def predict(state: ServeState, request: Request, model: ServedModel) -> Response:
    body = await read_body(request, state.opts.max_body_bytes, state.opts.request_timeout_s)
    images, columnar = await state.in_thread(parse_predict, body, model)
    outputs = await _infer(state, model, images)
    return Response(await state.in_thread(predict_response, outputs, columnar), media_type="application/json")


async def _uploaded_files(request: Request, body: bytes) -> list[tuple[str, bytes]]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        form_request = Request(request.scope, replay)
        try:
            form = await form_request.form(max_files=MAX_FILES, max_fields=16)
        except HTTPException as exc:
            raise ApiError(400, f"bad multipart body: {exc.detail}") from None
        except Exception as exc:  # noqa: BLE001 - python-multipart parse errors
            raise ApiError(400, f"bad multipart body: {_first_line(exc)}") from None
        try:
            files = [(v.filename or key, await v.read()) for key, v in form.multi_items() if isinstance(v, UploadFile)]
        finally:
            await form.close()
        if not files:
            raise ApiError(400, "the multipart body has no file part (send e.g. curl -F image=@photo.jpg)")
        return files
    if ctype == "application/json":
        raise ApiError(400, ":detect takes image bytes or a multipart upload, not JSON (use :predict for JSON)")
    # Any other type (image/*, application/octet-stream, curl --data-binary's default) is the image itself.
    return [(request.query_params.get("name", "image")[:200], body)]


async def detect(state: ServeState, request: Request, model: ServedModel) -> Response:
    min_score = _query_number(request, "min_score", 0.5, 0.0, 1.0)
    max_boxes = int(_query_number(request, "max_boxes", 100, 1, 10_000, integer=True))
    t0 = time.perf_counter()
    body = await read_body(request, state.opts.max_body_bytes, state.opts.request_timeout_s)
    files = await _uploaded_files(request, body)
    max_pixels = model.detector.max_pixels
    images = await state.in_thread(lambda: [decode_image_bytes(data, name, max_pixels) for name, data in files])
    outputs = await _infer(state, model, images)
    records = []
    for (name, _), img, out in zip(files, images, outputs):
        dets = model.detector.to_detections(out, min_score=min_score, max_boxes=max_boxes)
        records.append({"image": name, "width": int(img.shape[1]), "height": int(img.shape[0]),
                        "detections": [d.to_dict() for d in dets]})
    ms = (time.perf_counter() - t0) * 1000
    return JSONResponse(records, headers={"X-Odkit-Latency-Ms": f"{ms:.1f}", "X-Odkit-Model": model.name})


def create_app(opts: ServeOptions, models: dict[str, ServedModel] | None = None) -> Starlette:
    state = ServeState(opts, models if models is not None else load_models(opts))

    async def instrumented(request: Request, endpoint: str, label: str,
                           fn: Callable[[], Awaitable[Response]]) -> Response:
        t0 = time.perf_counter()
        try:
            response = await fn()
        except ApiError as exc:
            response = JSONResponse({"error": exc.message}, status_code=exc.status)
        except Exception as exc:  # noqa: BLE001 - the server answers and keeps running
            log.exception("internal error on %s", request.url.path)
            response = JSONResponse({"error": f"internal error: {type(exc).__name__}: {_first_line(exc)}"},
                                    status_code=500)
        state.metrics.request(label, endpoint, response.status_code, time.perf_counter() - t0)
        return response

    async def models_route(request: Request) -> Response:
        rest = request.path_params["rest"]
        m = _PATH_RE.match(rest)
        name = m.group("name") if m else ""
        label = name if name in state.models else "-"
        verb = (m.group("verb") or "") if m else ""
        endpoint = verb if verb in ("predict", "detect") else ("metadata" if m and m.group("meta") else "status")

        async def handle() -> Response:
            if m is None:
                raise ApiError(404, f"unknown path /v1/models/{rest[:100]}")
            if m.group("label"):
                raise ApiError(404, "version labels are not supported; use /v1/models/NAME or /versions/1")
            model = state.model(name, m.group("version"))
            if verb:
                if verb not in ("predict", "detect"):
                    raise ApiError(404, f"unknown method :{verb} (this server has :predict and :detect)")
                if request.method != "POST":
                    raise ApiError(405, f":{verb} takes POST")
                return await (predict if verb == "predict" else detect)(state, request, model)
            if request.method != "GET":
                raise ApiError(405, f"{request.url.path} takes GET")
            return JSONResponse(model.metadata() if m.group("meta") else model.status())

        return await instrumented(request, endpoint, label, handle)

    async def healthz(request: Request) -> Response:
        async def handle() -> Response:
            return JSONResponse({"status": "ok", "models": [
                {"name": m.name, "classes": m.classes(), "max_batch": m.max_batch,
                 "input_size": m.detector.info.get("input_size")} for m in state.models.values()
            ]})  # fmt: skip

        return await instrumented(request, "healthz", "-", handle)

    async def metrics(request: Request) -> Response:
        async def handle() -> Response:
            return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4")

        return await instrumented(request, "metrics", "-", handle)

    async def static(request: Request) -> Response:
        data, ctype = state.static[request.url.path]
        return Response(data, media_type=ctype, headers={"Cache-Control": "no-cache"})

    async def not_found(request: Request, exc: Exception) -> Response:
        code = getattr(exc, "status_code", 404)
        detail = getattr(exc, "detail", "not found")
        state.metrics.request("-", "other", code, 0.0)
        return JSONResponse({"error": f"{detail}: {request.method} {request.url.path[:200]}"}, status_code=code)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        for b in state.batchers.values():
            b.start()
        try:
            yield
        finally:
            for b in state.batchers.values():
                await b.stop()
            state.decode_pool.shutdown(wait=False, cancel_futures=True)
            state.infer_pool.shutdown(wait=False, cancel_futures=True)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v1/models/{rest:path}", models_route, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        *(Route(path, static, methods=["GET"]) for path in STATIC),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: not_found})
    app.state.odkit = state
    return app


def app_from_env() -> Starlette:
    """uvicorn's factory for ``--workers > 1``: each worker process loads the models once."""
    opts = ServeOptions.from_env()
    HeaderTimeoutH11Protocol.timeout_s = opts.request_timeout_s
    return create_app(opts)


class HeaderTimeoutH11Protocol(H11Protocol):  # type: ignore[misc]
    """uvicorn's h11 protocol, closing connections whose request line + headers take over ``timeout_s``.

    uvicorn times out idle keep-alive connections but not a client that sends its headers slowly (or
    nothing at all). The deadline starts when the connection opens and again after each response; the
    connection is closed if no new request has started by then. The body has its own deadline (408).
    """

    timeout_s: float = 30.0  # set from --request_timeout_s before serving (class-level: worker processes too)

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._deadline_cycle = getattr(self, "cycle", None)
        self._deadline_timer = self.loop.call_later(self.timeout_s, self._header_deadline_passed)

    def _disarm_header_deadline(self) -> None:
        timer = getattr(self, "_deadline_timer", None)
        if timer is not None:
            timer.cancel()
            self._deadline_timer = None

    def _header_deadline_passed(self) -> None:
        self._deadline_timer = None
        if getattr(self, "cycle", None) is self._deadline_cycle and not self.transport.is_closing():
            self.transport.close()  # no request started in time

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)


def run_server(opts: ServeOptions, models: dict[str, ServedModel]) -> None:
    """Serve until interrupted (uvicorn; several worker processes when opts.workers > 1)."""
    import uvicorn

    HeaderTimeoutH11Protocol.timeout_s = opts.request_timeout_s
    common: dict[str, Any] = dict(
        host=opts.host, port=opts.port, log_level="warning", access_log=False, server_header=False,
        timeout_keep_alive=5, timeout_graceful_shutdown=5, limit_concurrency=opts.max_connections,
        h11_max_incomplete_event_size=64 * 1024, http=HeaderTimeoutH11Protocol,
    )
    family, kind, proto, _, addr = socket.getaddrinfo(opts.host, opts.port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as probe:  # a taken port is one clear line, not a uvicorn log
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(addr)
    names = ", ".join(f"{m.name} ({m.path}, max batch {m.max_batch})" for m in models.values())
    print(f"odkit serve: {names} on http://{opts.host}:{opts.port}/ (REST: /v1/models/NAME:predict, "
          f"page: /, {opts.workers} worker(s), {opts.threads_per_worker()} thread(s) each)", file=sys.stderr, flush=True)
    if opts.workers > 1:
        os.environ[ENV_OPTIONS] = json.dumps(asdict(opts))
        uvicorn.run("odkit.serve.app:app_from_env", factory=True, workers=opts.workers, **common)
    else:
        uvicorn.run(create_app(opts, models), **common)

