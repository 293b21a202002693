"""Resolving a webhook's host and posting to it. Only the destination's host is ever logged or
kept with an error: a Slack or Teams webhook URL is itself a credential. Nothing of a
receiver's answer but its status code is kept or logged: it may be an internal service's."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from mdstudio_core.domain.notifications import IPAddress, destination, host_of, literal_address

logger = logging.getLogger(__name__)
# httpx logs every request's full URL at INFO (a webhook's path is its credential), and
# httpcore every answer's status line and headers at DEBUG (the receiver's bytes).
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)


@dataclass(frozen=True)
class PostResult:
    ok: bool
    status_code: int | None
    error: str | None  # `HTTP <status>`, the failure's class and the host, or the refusal
    refused: bool = False  # the rules refused the destination: nothing was sent


def resolve(url: str) -> list[IPAddress]:
    """The addresses the URL's host stands for now: the host itself when it is an address (in
    any spelling), else every address DNS gives for it. Raises OSError when it gives none."""
    host, port = destination(url)
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in found))


def post(
    url: str, addresses: Sequence[IPAddress], body: bytes, headers: dict[str, str], timeout: float
) -> PostResult:
    """POST `body` as JSON to the first of `addresses` (those that were checked) that takes
    the connection, never to an address the host might resolve to by now: the Host header
    and, for https, SNI and the certificate's check use the URL's host. 2xx is delivered.
    Redirects are not followed (a receiver moving elsewhere must be subscribed again, where
    the rules apply)."""
    host = host_of(url)
    target = httpx.URL(url)
    tls = {"sni_hostname": target.host} if target.scheme == "https" else {}
    request_headers = {
        "Content-Type": "application/json",
        **headers,
        "Host": target.netloc.decode("ascii"),
    }

    def send(client: httpx.Client, address: IPAddress) -> httpx.Response:
        return client.post(
            target.copy_with(host=str(address)),
            content=body,
            headers=request_headers,
            extensions=tls,
        )

    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            response = _first_answer(client, addresses, send)
    except httpx.HTTPError as exc:
        logger.warning("webhook to %s failed: %s", host, type(exc).__name__)
        return PostResult(False, None, f"{type(exc).__name__} reaching {host}")
    if 200 <= response.status_code < 300:
        return PostResult(True, response.status_code, None)
    logger.warning("webhook to %s answered %s", host, response.status_code)
    return PostResult(False, response.status_code, f"HTTP {response.status_code}")


def _first_answer(
    client: httpx.Client,
    addresses: Sequence[IPAddress],
    send: Callable[[httpx.Client, IPAddress], httpx.Response],
) -> httpx.Response:
    """The answer through the first address that takes the connection (the last one's
    failure if none does)."""
    *others, last = addresses
    for address in others:
        try:
            return send(client, address)
        except httpx.ConnectError:
            continue
    return send(client, last)
