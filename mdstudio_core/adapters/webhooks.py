"""Posting a webhook. Only the destination's host is ever logged or kept with an error: a
Slack or Teams webhook URL is itself a credential."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx

from mdstudio_core.domain.notifications import excerpt, host_of

logger = logging.getLogger(__name__)
# httpx logs every request's full URL at INFO: a webhook's path is its credential.
logging.getLogger("httpx").setLevel(logging.WARNING)


@dataclass(frozen=True)
class PostResult:
    ok: bool
    status_code: int | None
    error: str | None  # the status and a short excerpt of the answer, or the failure's kind


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> PostResult:
    """POST `body` as JSON; 2xx is delivered. Redirects are not followed (a receiver moving
    elsewhere must be subscribed again, where the host rules apply)."""
    host = host_of(url)
    try:
        response = httpx.post(
            url,
            content=body,
            headers={"Content-Type": "application/json", **headers},
            timeout=timeout,
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        logger.warning("webhook to %s failed: %s", host, type(exc).__name__)
        return PostResult(False, None, f"{type(exc).__name__} reaching {host}")
    if 200 <= response.status_code < 300:
        return PostResult(True, response.status_code, None)
    logger.warning("webhook to %s answered %s", host, response.status_code)
    answer = excerpt(response.text)
    return PostResult(
        False,
        response.status_code,
        f"HTTP {response.status_code}" + (f": {answer}" if answer else ""),
    )
