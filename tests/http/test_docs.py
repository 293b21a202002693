"""`/docs` and `/redoc`: off unless MDSTUDIO_API_DOCS=1; then served with Swagger UI and ReDoc
from the package's files, under the console's frame rules and a policy that lets nothing in
from another origin. (`tests/console/test_browser.py` loads both pages in Chromium and sees no
request leave the origin.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.config import Settings
from mdstudio_core.entrypoints.http import create_app, docs
from tests.http.conftest import is_problem

PAGES = ("/docs", "/redoc")
# Any address of another origin a page or program could load: an absolute or scheme-relative
# URL in a `src` or `href`.
FOREIGN = re.compile(r"""(?:src|href)=["'](?:https?:)?//""")


def _client(tmp_path: Path, **settings: object) -> Iterator[TestClient]:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'md.db'}")
    with TestClient(create_app(Settings(**settings), engine)) as client:
        yield client
    engine.dispose()


@pytest.fixture
def off(tmp_path: Path) -> Iterator[TestClient]:
    yield from _client(tmp_path)


@pytest.fixture
def on(tmp_path: Path) -> Iterator[TestClient]:
    yield from _client(tmp_path, api_docs=True)


def test_the_docs_are_off_by_default_and_the_schema_is_not(off):
    for path in (*PAGES, "/docs/oauth2-redirect", "/docs/static/swagger-ui-bundle.js"):
        assert is_problem(off.get(path), 404), path
    assert off.get("/openapi.json").status_code == 200


def test_with_the_setting_the_pages_load_only_files_of_this_origin(on):
    for path in PAGES:
        page = on.get(path)
        assert page.status_code == 200, path
        assert not FOREIGN.search(page.text), path
        assert "<script>" not in page.text  # no inline script: the policy would refuse it
        assert page.headers["content-security-policy"] == docs.CONTENT_SECURITY_POLICY
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
        for asset in re.findall(r'(?:src|href)="(/[^"]+)"', page.text):
            assert on.get(asset).status_code == 200, asset
    policy = docs.CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "http" not in policy and "*" not in policy  # no other origin is allowed anything


def test_swagger_ui_starts_from_a_script_of_ours_without_the_validator(on):
    start = on.get("/docs/swagger-init.js")
    assert start.headers["content-type"].startswith("text/javascript")
    assert "validatorUrl: null" in start.text
    assert "/openapi.json" in on.get("/docs").text


def test_the_redoc_program_is_served_without_its_cdn_logo(on):
    program = on.get("/docs/redoc.standalone.js")
    assert program.status_code == 200
    assert program.headers["content-type"].startswith("text/javascript")
    assert docs.REDOC_LOGO not in program.text
    assert len(program.content) > 500_000  # the whole program, not a stub
    original = (docs.ASSETS / "redoc.standalone.js").read_text()
    assert docs.REDOC_LOGO in original  # what the replacement is for
    with pytest.raises(RuntimeError, match="no longer loads"):
        docs.without_redoc_logo("a program without the address")
