"""The HTTP application (ASGI, Starlette): routes, bearer token, bounded bodies, errors in OpenAI's shape.

Routes: GET /v1/models, GET /v1/models/{id}, POST /v1/chat/completions, POST /v1/responses,
GET|DELETE /v1/responses/{id}. Every route needs `Authorization: Bearer <key>` (401 otherwise). No
CORS headers are sent, so a web page cannot call the server from a browser. Bodies above
`max_body_bytes` are refused (413) before they are read in full.

Why Starlette (+ uvicorn): a small, well-kept ASGI toolkit with streaming responses and nothing
else; uvicorn is the reference ASGI server, runs in a thread (the window) or in the foreground
(`python -m engine serve`), and its pure-Python HTTP parser (h11) needs no compiler.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from engine.server import chat, common, responses
from engine.server.errors import APIError, invalid, model_not_found, no_model
from engine.server.host import Job, JobFailed, ModelHost
from engine.server.store import ResponseStore
from engine.server.turn import new_id
from engine.types import Delta, Finished

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 16 * 2**20


@dataclass
class ServerConfig:
    api_key: str
    store: ResponseStore
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


def _error(e: APIError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status)


def _sse(data: dict[str, Any], event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _watch_disconnect(request: Request, job: Job) -> None:
    """Cancel the job as soon as the client goes away (the body has been read: only a disconnect is left)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            job.cancel()
            return


class API:
    def __init__(self, host: ModelHost, config: ServerConfig) -> None:
        self.host = host
        self.config = config

    # -- plumbing -----------------------------------------------------------------------------------
    def _authorize(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.config.api_key.encode()):
            raise APIError(401, "Incorrect API key provided. Send it as 'Authorization: Bearer <key>'; Lantern shows "
                                "the key in Settings (or pass --api-key to python -m engine serve).",
                           code="invalid_api_key")

    async def _json(self, request: Request) -> dict[str, Any]:
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise APIError(413, f"The request body is larger than {limit} bytes.", code="request_too_large")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise APIError(413, f"The request body is larger than {limit} bytes.", code="request_too_large")
            chunks.append(chunk)
        try:
            body = json.loads(b"".join(chunks))
        except (ValueError, UnicodeDecodeError):
            raise invalid("We could not parse the JSON body of your request. The body must be a JSON object.",
                          None, code="invalid_json") from None
        if not isinstance(body, dict):
            raise invalid("The request body must be a JSON object.", None, code="invalid_json")
        return body

    def _model(self) -> Any:
        model = self.host.current()
        if model is None:
            raise no_model()
        return model

    async def handle(self, request: Request, handler: Any) -> Response:
        try:
            self._authorize(request)
            return await handler(request)
        except APIError as e:
            return _error(e)
        except Exception as exc:  # noqa: BLE001 - never a bare 500 page
            log.exception("API request failed")
            return _error(APIError(500, f"Internal error: {type(exc).__name__}: {exc}", type="server_error"))

    # -- models -------------------------------------------------------------------------------------
    async def models(self, request: Request) -> Response:
        model = self.host.current()
        data = [] if model is None else [self._model_card(model)]
        return JSONResponse({"object": "list", "data": data})

    async def model(self, request: Request) -> Response:
        model = self._model()
        if request.path_params["model_id"] not in common.model_aliases(model):
            raise model_not_found(request.path_params["model_id"])
        return JSONResponse(self._model_card(model))

    @staticmethod
    def _model_card(model: Any) -> dict[str, Any]:
        return {"id": common.model_id(model), "object": "model", "created": 0, "owned_by": "lantern",
                "context_length": model.info.max_context}

    # -- chat completions ---------------------------------------------------------------------------
    async def chat_completions(self, request: Request) -> Response:
        body = await self._json(request)
        model = self._model()
        req = chat.parse(body, model)
        prepared = common.check_context(model, req.messages, req.params, "messages")
        req = chat.with_budget(req, prepared.prompt_tokens, model.info.max_context)
        job = Job(req.messages, req.params)
        self.host.submit(job)
        if req.stream:
            return StreamingResponse(self._chat_stream(request, job, req, model), media_type="text/event-stream")
        watcher = asyncio.create_task(_watch_disconnect(request, job))
        try:
            asm = chat.assembler(req)
            async for event in job:
                if isinstance(event, Delta):
                    asm.feed(event)
                    if asm.stopped_by_sequence:
                        job.cancel()
                elif isinstance(event, JobFailed):
                    raise event.error
                elif event.reason == "error":
                    raise APIError(500, event.error or "The generation failed.", type="server_error")
                else:
                    asm.finish()
                    return JSONResponse(chat.completion(req, new_id("chatcmpl-"), int(time.time()), asm, event,
                                                        model.tokenizer))
            raise APIError(500, "The generation ended without a result.", type="server_error")
        finally:
            job.cancel()
            watcher.cancel()

    async def _chat_stream(self, request: Request, job: Job, req: chat.ChatRequest, model: Any) -> AsyncIterator[str]:
        watcher = asyncio.create_task(_watch_disconnect(request, job))
        try:
            writer = chat.ChunkWriter(req)
            asm = chat.assembler(req)
            yield _sse(writer.first())
            async for event in job:
                if isinstance(event, Delta):
                    for piece in asm.feed(event):
                        chunk = writer.piece(piece)
                        if chunk is not None:
                            yield _sse(chunk)
                    if asm.stopped_by_sequence:
                        job.cancel()
                elif isinstance(event, JobFailed):
                    yield _sse(event.error.body())
                    break
                elif isinstance(event, Finished):
                    if event.reason == "error":
                        yield _sse(APIError(500, event.error or "The generation failed.", type="server_error").body())
                        break
                    for piece in asm.finish():
                        chunk = writer.piece(piece)
                        if chunk is not None:
                            yield _sse(chunk)
                    yield _sse(writer.last(event, asm))
                    if req.include_usage:
                        yield _sse(writer.usage_chunk(event, asm, model.tokenizer))
            yield "data: [DONE]\n\n"
        finally:
            job.cancel()
            watcher.cancel()

    # -- responses ----------------------------------------------------------------------------------
    async def create_response(self, request: Request) -> Response:
        body = await self._json(request)
        model = self._model()
        req = responses.parse(body, model, self.config.store)
        prepared = common.check_context(model, req.messages, req.params, "input")
        room = max(1, model.info.max_context - prepared.prompt_tokens)
        req.params = replace(req.params, max_tokens=min(req.params.max_tokens, room))
        job = Job(req.messages, req.params)
        self.host.submit(job)
        events = self._response_events(request, job, req, model)
        if req.stream:
            async def sse() -> AsyncIterator[str]:
                async for event in events:
                    yield _sse(event, event["type"])
            return StreamingResponse(sse(), media_type="text/event-stream")
        final: dict[str, Any] | None = None
        async for event in events:
            if event["type"] in ("response.completed", "response.incomplete", "response.failed"):
                final = event["response"]
        assert final is not None
        if final["status"] == "failed":
            raise APIError(500, final["error"]["message"], type="server_error", code=final["error"]["code"])
        return JSONResponse(final)

    async def _response_events(self, request: Request, job: Job, req: responses.ResponsesRequest,
                               model: Any) -> AsyncIterator[dict[str, Any]]:
        watcher = asyncio.create_task(_watch_disconnect(request, job))
        builder = responses.ResponseBuilder(req)
        asm = responses.assembler(req)
        try:
            for event in builder.start():
                yield event
            async for event in job:
                if isinstance(event, Delta):
                    for piece in asm.feed(event):
                        for out in builder.piece(piece):
                            yield out
                    continue
                if isinstance(event, JobFailed):
                    error = event.error
                elif event.reason == "error":
                    error = APIError(500, event.error or "The generation failed.", type="server_error")
                else:
                    for piece in asm.finish():
                        for out in builder.piece(piece):
                            yield out
                    response, closing = builder.finish(event, asm, model.tokenizer)
                    if req.store and not job.cancelled:
                        self.config.store.put(response, builder.stored_items())
                    for out in closing:
                        yield out
                    return
                _, closing = builder.failed(error)
                for out in closing:
                    yield out
                return
        finally:
            job.cancel()
            watcher.cancel()

    async def get_response(self, request: Request) -> Response:
        stored = self.config.store.get(request.path_params["response_id"])
        if stored is None:
            raise APIError(404, f"No response with id '{request.path_params['response_id']}' is stored.",
                           param="response_id", code="response_not_found")
        return JSONResponse(stored[0])

    async def delete_response(self, request: Request) -> Response:
        response_id = request.path_params["response_id"]
        if not self.config.store.delete(response_id):
            raise APIError(404, f"No response with id '{response_id}' is stored.", param="response_id",
                           code="response_not_found")
        return JSONResponse({"id": response_id, "object": "response", "deleted": True})


def create_app(host: ModelHost, config: ServerConfig) -> Starlette:
    api = API(host, config)

    def route(path: str, handler: Any, methods: list[str]) -> Route:
        async def endpoint(request: Request) -> Response:
            return await api.handle(request, handler)
        return Route(path, endpoint, methods=methods)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        message = {404: f"Unknown URL: {request.method} {request.url.path}.",
                   405: f"{request.method} is not allowed on {request.url.path}."}.get(status, str(exc))
        return _error(APIError(status, message, code="not_found" if status == 404 else None))

    routes = [
        route("/v1/models", api.models, ["GET"]),
        route("/v1/models/{model_id:path}", api.model, ["GET"]),
        route("/v1/chat/completions", api.chat_completions, ["POST"]),
        route("/v1/responses", api.create_response, ["POST"]),
        route("/v1/responses/{response_id}", api.get_response, ["GET"]),
        route("/v1/responses/{response_id}", api.delete_response, ["DELETE"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})
