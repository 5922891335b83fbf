"""/docs: Swagger UI from the files the swagger-ui-bundle package ships, so it works offline.

FastAPI's own /docs and /redoc load their scripts from a CDN, which a factory network often
cannot reach. Swagger UI's files come with the ``swagger-ui-bundle-v2`` package (imported as
``swagger_ui_bundle``; Swagger UI 5, the first to read OpenAPI 3.1, which FastAPI writes) and
are served here under ``/docs/assets``. ReDoc ships in no Python package without a web
framework of its own, so the collector has no /redoc.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"


def install(app: FastAPI) -> None:
    """Serve Swagger UI at /docs, every file it loads from this collector."""
    app.mount(ASSETS_PATH, StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        # Relative to the app's root, so that /docs works behind a proxy's path prefix too.
        root = request.scope.get("root_path", "").rstrip("/")
        assets = root + ASSETS_PATH
        return get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"),
            title=f"{app.title} - API",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon-32x32.png",
            # No badge that asks validator.swagger.io about the document.
            swagger_ui_parameters={"validatorUrl": None},
        )
