"""What every console page shares: the session cookie, CSRF tokens, forms, rendering, and
running services as the signed-in user.

A session is an opaque id in an HttpOnly, SameSite=Strict cookie (Secure over HTTPS); the store
keeps its hash (`service_layer.console_sessions`). Each form carries a CSRF token derived from
the session id (an HMAC the server recomputes, so nothing more is stored); the sign-in form,
before any session, uses a double-submit cookie. A POST without a valid token is 403.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

import orjson
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from mdstudio_core.domain.model import Identity
from mdstudio_core.service_layer import console_sessions
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

T = TypeVar("T")

SESSION_COOKIE = "mdstudio_session"
LOGIN_CSRF_COOKIE = "mdstudio_login_csrf"
CSRF_FIELD = "csrf_token"
# The longest form body a console page posts (a reason of 10,000 characters, encoded).
MAX_FORM_BYTES = 64 * 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def shown(value: Any) -> str:
    """A field's value as a reviewer reads it: text as is, anything else as compact JSON."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1 else f"{round(value, 4):g}"
    return orjson.dumps(value).decode()


def age(since: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """`45 s`, `12 min`, `5 h`, `3 d`: how long a request has waited."""
    if since is None:
        return "—"
    seconds = max(0, int(((now or dt.datetime.now(dt.UTC)) - since).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def stamp(at: dt.datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at else "—"


templates.filters.update(shown=shown, age=age, stamp=stamp)


def csrf_token(session_id: str) -> str:
    """The CSRF token of a session: only someone who holds the session id can compute it."""
    return hmac.new(session_id.encode(), b"mdstudio-console-csrf", hashlib.sha256).hexdigest()


def start_clock(request: Request) -> None:
    """Note when the console began serving the request (see `render`'s Server-Timing)."""
    request.state.console_started = time.perf_counter()


# The context values of a page that hold an error's text.
ERROR_TEXTS = ("error", "detail", "evidence_error")


def render(
    request: Request,
    template: str,
    status_code: int = 200,
    identity: Identity | None = None,
    **context: Any,
) -> HTMLResponse:
    """The page, with the server's time on it in `Server-Timing` (the browser's developer tools
    and bench/console.py read it). The error texts it shows (`ERROR_TEXTS`) are scrubbed of
    credentials (`Settings.scrub`): a warehouse's error may quote them."""
    session_id = request.cookies.get(SESSION_COOKIE, "")
    scrub = request.app.state.settings.scrub
    for name in ERROR_TEXTS:
        if isinstance(context.get(name), str):
            context[name] = scrub(context[name])
    html = templates.get_template(template).render(
        identity=identity,
        csrf=csrf_token(session_id) if identity else context.pop("csrf", ""),
        path=request.url.path,
        **context,
    )
    headers = dict(SECURITY_HEADERS)
    started = getattr(request.state, "console_started", None)
    if started is not None:
        headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
    return HTMLResponse(html, status_code=status_code, headers=headers)


def not_found(request: Request, identity: Identity | None, detail: str) -> HTMLResponse:
    return render(request, "error.html", 404, identity, title="Not found", detail=detail)


def forbidden(request: Request, detail: str) -> HTMLResponse:
    return render(request, "error.html", 403, None, title="Forbidden", detail=detail)


def to_login() -> RedirectResponse:
    return RedirectResponse("/ui/login", status_code=303, headers=SECURITY_HEADERS)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


async def form(request: Request) -> dict[str, str]:
    """An urlencoded form's fields (the last value of each); a body over the bound is empty."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[-1] for name, values in parsed.items()}


def csrf_ok(request: Request, fields: Mapping[str, str]) -> bool:
    """The form's token matches the session's (compared in constant time)."""
    session_id = request.cookies.get(SESSION_COOKIE, "")
    sent = fields.get(CSRF_FIELD, "")
    return bool(session_id and sent) and hmac.compare_digest(sent, csrf_token(session_id))


def login_csrf_ok(request: Request, fields: Mapping[str, str]) -> bool:
    """The sign-in form's double-submit token: the form's value equals the cookie's."""
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    sent = fields.get(CSRF_FIELD, "")
    return bool(cookie and sent) and hmac.compare_digest(sent, cookie)


def new_login_csrf() -> str:
    return secrets.token_urlsafe(32)


def secure(request: Request) -> bool:
    """Served over HTTPS (directly, or behind a proxy uvicorn trusts for X-Forwarded-Proto)."""
    return request.url.scheme == "https"


async def as_user(
    request: Request, work: Callable[[UnitOfWork, Identity], T]
) -> tuple[Identity, T]:
    """`work(uow, identity)` for the session's user, in a worker thread and one transaction
    with the session lookup (the services open their own `with uow`, which joins it). Raises
    `Unauthenticated` when the session has ended."""
    state = request.app.state
    session_id = request.cookies.get(SESSION_COOKIE, "")

    def authorised() -> tuple[Identity, T]:
        uow = UnitOfWork(state.engine)
        with uow:
            identity = console_sessions.session_identity(uow, session_id)
            return identity, work(uow, identity)

    return await asyncio.get_running_loop().run_in_executor(state.executor, authorised)


async def blocking(request: Request, work: Callable[[], T]) -> T:
    """Blocking work on the store on the app's worker threads (previews have their own:
    `previews.PreviewSlots`)."""
    return await asyncio.get_running_loop().run_in_executor(request.app.state.executor, work)
