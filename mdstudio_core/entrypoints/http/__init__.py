"""The HTTP API (`mdstudio serve`): `create_app` builds it; one router per resource."""

from mdstudio_core.entrypoints.http.app import create_app

__all__ = ["create_app"]
