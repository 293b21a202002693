"""The console over the `engine` fixture (SQLite and PostgreSQL): one app, a browser-like
client per signed-in user, and the demo warehouse for the evidence."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from demo import warehouse as demo_warehouse
from mdstudio_core.config import Settings
from mdstudio_core.entrypoints.http import create_app
from mdstudio_core.service_layer import tokens
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.support.factories import person

_CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')
_ERROR = re.compile(r'data-testid="error-message">([^<]*)<')


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def error_of(html: str) -> str | None:
    match = _ERROR.search(html)
    return match.group(1).replace("&#39;", "'").replace("&quot;", '"') if match else None


class Browser:
    """One user's client: its own cookie jar, like a browser."""

    def __init__(self, client: TestClient, secret: str | None = None) -> None:
        self.client = client
        self.secret = secret
        self.csrf = ""

    def sign_in(self) -> Any:
        page = self.client.get("/ui/login")
        response = self.client.post(
            "/ui/login",
            data={"token": self.secret, "csrf_token": csrf_of(page.text)},
            follow_redirects=False,
        )
        if response.status_code == 303:
            self.csrf = csrf_of(self.client.get("/ui/").text)
        return response

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.client.get(path, follow_redirects=False, **kwargs)

    def post(self, path: str, data: dict[str, str] | None = None, csrf: bool = True) -> Any:
        fields = {"csrf_token": self.csrf} if csrf else {}
        return self.client.post(path, data=fields | (data or {}), follow_redirects=False)


@pytest.fixture
def console_settings(tmp_path: Path) -> Settings:
    return Settings(sources={"DEMO": demo_warehouse.build(tmp_path / "wh.db")})


@pytest.fixture
def browser(engine: Engine, console_settings: Settings) -> Callable[..., Browser]:
    """`browser(tenant, user, *roles, expires_in=..., https=False)`: a client signed in as
    that identity (`signed_in=False`: holding the token, not yet signed in)."""
    app = create_app(console_settings, engine=engine)

    def make(
        tenant: uuid.UUID,
        user: str,
        *roles: str,
        expires_in: dt.timedelta | None = tokens.DEFAULT_LIFETIME,
        https: bool = False,
        signed_in: bool = True,
    ) -> Browser:
        secret, _ = tokens.create_token(
            UnitOfWork(engine), person(tenant, user, *roles), expires_in
        )
        client = TestClient(app, base_url="https://testserver" if https else "http://testserver")
        user_browser = Browser(client, secret)
        if signed_in:
            assert user_browser.sign_in().status_code == 303
        return user_browser

    return make
