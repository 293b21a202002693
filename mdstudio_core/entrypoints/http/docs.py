"""The interactive API docs, `/docs` (Swagger UI) and `/redoc` (ReDoc), only with
`MDSTUDIO_API_DOCS=1`.

FastAPI's own pages load Swagger UI and ReDoc from a CDN (and Swagger UI asks
validator.swagger.io for a badge): whoever serves those files runs script in the API's origin.
These pages load the same programs from the files the `fastapi-offline` package ships, served
here, start them from a script of ours rather than an inline one, and answer with the console's
frame rules under a Content-Security-Policy that lets nothing in from another origin.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from mdstudio_core.entrypoints.http.console.web import SECURITY_HEADERS

ASSETS = Path(fastapi_offline.__file__).parent / "static"
# The console's policy, plus what the two programs need from this origin only: their scripts,
# the schema and "Try it out" requests (connect), the inline images of Swagger UI's stylesheet
# (data:), the styles both set from script, and the search worker ReDoc makes from its own code.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; worker-src blob:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# ReDoc's sidebar shows Redocly's logo from their CDN. The copy served here points it at an
# empty image (which then hides itself), so the page asks no other origin for anything rather
# than leaving it to the policy to refuse.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
HEADERS = SECURITY_HEADERS | {"Content-Security-Policy": CONTENT_SECURITY_POLICY}

SWAGGER_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>mdstudio API - Swagger UI</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css">
<link rel="icon" href="/docs/static/favicon.png">
</head>
<body>
<div id="swagger-ui" data-openapi-url="/openapi.json"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/swagger-init.js"></script>
</body>
</html>
"""

# Swagger UI's start as a file of its own (the policy allows no inline script); no validator,
# so no request for validator.swagger.io's badge.
SWAGGER_INIT = """window.ui = SwaggerUIBundle({
  url: document.getElementById("swagger-ui").dataset.openapiUrl,
  dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  deepLinking: true,
  validatorUrl: null,
});
"""

REDOC_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>mdstudio API - ReDoc</title>
<link rel="icon" href="/docs/static/favicon.png">
</head>
<body>
<redoc spec-url="/openapi.json"></redoc>
<script src="/docs/redoc.standalone.js"></script>
</body>
</html>
"""


def install(app: FastAPI) -> None:
    """Serve `/docs`, `/redoc` and their files on `app`."""
    app.mount("/docs/static", StaticFiles(directory=ASSETS), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(SWAGGER_PAGE, headers=HEADERS)

    @app.get("/docs/swagger-init.js", include_in_schema=False)
    async def swagger_init() -> Response:
        return Response(SWAGGER_INIT, media_type="text/javascript", headers=HEADERS)

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return HTMLResponse(REDOC_PAGE, headers=HEADERS)

    redoc_program: list[str] = []  # read on the first request, then kept

    @app.get("/docs/redoc.standalone.js", include_in_schema=False)
    async def redoc_script() -> Response:
        if not redoc_program:
            redoc_program.append(without_redoc_logo((ASSETS / "redoc.standalone.js").read_text()))
        return Response(redoc_program[0], media_type="text/javascript", headers=HEADERS)


def without_redoc_logo(program: str) -> str:
    """ReDoc's program with its logo's CDN address replaced by an empty image."""
    if REDOC_LOGO not in program:
        raise RuntimeError(f"ReDoc no longer loads {REDOC_LOGO}: check what it loads now")
    return program.replace(REDOC_LOGO, "data:,")
