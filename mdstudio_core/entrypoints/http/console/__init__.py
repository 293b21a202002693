"""The steward console (`/ui/`): server-rendered pages on the same services as the CLI and the
API. Plain HTML forms, one stylesheet shipped in the package, no script and no CDN: the page
works offline and under a strict Content-Security-Policy."""

from mdstudio_core.entrypoints.http.console.routes import install

__all__ = ["install"]
