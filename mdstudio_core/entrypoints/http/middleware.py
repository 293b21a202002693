"""The body limit: a request body over `MDSTUDIO_MAX_BODY_BYTES` is answered 413 before it is
read to its end."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mdstudio_core.entrypoints.http.problems import problem


class BodyLimit:
    """Answer 413 to a body over `max_bytes`, judged by Content-Length when given and by the
    bytes actually received otherwise, so an oversized body is never read to its end."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._reject(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            413,
            "body-too-large",
            f"the request body exceeds {self.max_bytes} bytes",
            scope["path"],
            field="body",
        )
        await response(scope, receive, send)
