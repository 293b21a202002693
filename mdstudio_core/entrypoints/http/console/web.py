"""What every console page shares: the session cookie, CSRF tokens, forms, rendering, and
running services as the signed-in user.

A session is an opaque id in an HttpOnly, SameSite=Strict cookie; over HTTPS it is Secure and
named with the `__Host-` prefix (Path=/, no Domain), so no other host, and no page served over
plain HTTP, can set it. The store keeps its hash (`service_layer.console_sessions`). Each form
carries a CSRF token derived from the session id (an HMAC the server recomputes, so nothing more
is stored); the sign-in form, before any session, carries an HMAC of its pre-session cookie
under a key only the server knows (kept in the store), so a cookie and field planted from
elsewhere do not pair up. A POST without a valid token is 403.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from mdstudio_core.domain.errors import Conflict, Forbidden, InvalidInput, MdstudioError, NotFound
from mdstudio_core.domain.model import Identity
from mdstudio_core.service_layer import console_sessions
from mdstudio_core.service_layer.tokens import Unauthenticated
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

T = TypeVar("T")

SESSION_COOKIE = "mdstudio_session"
# The session cookie's name over HTTPS: browsers accept a `__Host-` cookie only when it is
# Secure, has Path=/ and no Domain, and only from a secure page of the host itself.
SECURE_SESSION_COOKIE = "__Host-" + SESSION_COOKIE
LOGIN_CSRF_COOKIE = "mdstudio_login_csrf"
CSRF_FIELD = "csrf_token"
# How long a sign-in form's CSRF pair stays good, and the clock difference tolerated between
# the server processes that issue and check it.
LOGIN_CSRF_LIFETIME_S = 3600
CLOCK_SKEW_S = 60
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


BAD_CSRF = "the form's CSRF token is missing or invalid: reload the page and submit it again"


def console_router() -> APIRouter:
    """A router of console pages: under `/ui`, out of the API's schema, HTML by default, each
    request timed from its start (`start_clock`)."""
    return APIRouter(
        prefix="/ui",
        include_in_schema=False,
        default_response_class=HTMLResponse,
        dependencies=[Depends(start_clock)],
    )


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
    session_id = session_id_of(request)
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
    session_id = session_id_of(request)
    sent = fields.get(CSRF_FIELD, "")
    return bool(session_id and sent) and hmac.compare_digest(sent, csrf_token(session_id))


def new_login_csrf(key: bytes) -> tuple[str, str]:
    """A sign-in form's (cookie, field): a random nonce with its issue time, and its HMAC under
    the server's key."""
    cookie = f"{secrets.token_urlsafe(32)}.{int(time.time())}"
    return cookie, _login_csrf_field(key, cookie)


def login_csrf_ok(request: Request, fields: Mapping[str, str], key: bytes) -> bool:
    """The sign-in form's field is the HMAC of its own cookie under the server's key, and the
    cookie was issued within `LOGIN_CSRF_LIFETIME_S`: a field computed without the key, or one
    taken from another cookie's pair, does not pass."""
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    sent = fields.get(CSRF_FIELD, "")
    nonce, _, issued = cookie.rpartition(".")
    if not (nonce and sent and issued.isdigit()) or len(cookie) > 100:
        return False
    age = time.time() - int(issued)
    if not -CLOCK_SKEW_S <= age <= LOGIN_CSRF_LIFETIME_S:
        return False
    return hmac.compare_digest(sent, _login_csrf_field(key, cookie))


def _login_csrf_field(key: bytes, cookie: str) -> str:
    return hmac.new(key, b"mdstudio-console-login:" + cookie.encode(), hashlib.sha256).hexdigest()


async def login_csrf_key(request: Request) -> bytes:
    """The server's sign-in CSRF key, read (or made) in the store once per process."""
    state = request.app.state
    key: bytes | None = getattr(state, "login_csrf_key", None)
    if key is None:
        key = await blocking(
            request, lambda: console_sessions.login_csrf_key(UnitOfWork(state.engine))
        )
        state.login_csrf_key = key
    return key


def secure(request: Request) -> bool:
    """Served over HTTPS (directly, or behind a proxy uvicorn trusts for X-Forwarded-Proto)."""
    return request.url.scheme == "https"


def session_cookie_name(request: Request) -> str:
    """`__Host-mdstudio_session` over HTTPS, `mdstudio_session` over plain HTTP: over HTTPS a
    cookie without the prefix (which anyone able to set cookies for the domain could have
    planted) is not read."""
    return SECURE_SESSION_COOKIE if secure(request) else SESSION_COOKIE


def session_id_of(request: Request) -> str:
    return request.cookies.get(session_cookie_name(request), "")


def set_session_cookie(
    response: Response, request: Request, session: console_sessions.Session
) -> None:
    lifetime = session.expires_at - dt.datetime.now(dt.UTC)
    response.set_cookie(
        session_cookie_name(request),
        session.id,
        max_age=max(1, int(lifetime.total_seconds())),
        expires=session.expires_at,
        path="/" if secure(request) else "/ui",
        httponly=True,
        samesite="strict",
        secure=secure(request),
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        session_cookie_name(request),
        path="/" if secure(request) else "/ui",
        httponly=True,
        samesite="strict",
        secure=secure(request),
    )


async def as_user(
    request: Request, work: Callable[[UnitOfWork, Identity], T]
) -> tuple[Identity, T]:
    """`work(uow, identity)` for the session's user, in a worker thread and one transaction
    with the session lookup (the services open their own `with uow`, which joins it), then the
    session's last-seen time when it is due. Raises `Unauthenticated` when the session has
    ended (expired, idle, signed out or its token revoked)."""
    state = request.app.state
    session_id = session_id_of(request)

    def authorised() -> tuple[Identity, T]:
        uow = UnitOfWork(state.engine)
        with uow:
            session = console_sessions.active_session(
                uow, session_id, state.settings.console_idle_timeout
            )
            done = work(uow, session.identity)
        if session.seen_due:  # its own short transaction, at most once a minute
            console_sessions.record_activity(UnitOfWork(state.engine), session_id)
        return session.identity, done

    return await asyncio.get_running_loop().run_in_executor(state.executor, authorised)


# The page that shows why a form's action was refused: (the refusal, its status).
Refused = Callable[[MdstudioError, int], Awaitable[Response]]


async def act_as_user(
    request: Request, work: Callable[[UnitOfWork, Identity], T], id_field: str, refused: Refused
) -> T | Response:
    """A form's action as the signed-in user (`as_user`), or the answer to its refusal, alike
    for every form: the sign-in page when the session has ended, not found for an unknown or a
    malformed id (`id_field`), else the `refused` page with 422 (bad input), 403 (forbidden) or
    409 (conflict)."""
    try:
        _, done = await as_user(request, work)
    except Unauthenticated:
        return to_login()
    except NotFound as exc:
        return not_found(request, None, str(exc))
    except InvalidInput as exc:
        if exc.field == id_field:
            return not_found(request, None, str(exc))
        return await refused(exc, 422)
    except Forbidden as exc:
        return await refused(exc, 403)
    except Conflict as exc:
        return await refused(exc, 409)
    return done


async def blocking(request: Request, work: Callable[[], T]) -> T:
    """Blocking work on the store on the app's worker threads (previews have their own:
    `previews.PreviewSlots`)."""
    return await asyncio.get_running_loop().run_in_executor(request.app.state.executor, work)
