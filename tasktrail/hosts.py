"""Which `Host` headers a listener answers to, and the ASGI guard that refuses the others (DNS rebinding).

A web page whose name an attacker rebinds to 127.0.0.1 talks to this server from the page's own origin,
so the browser's same-origin rules no longer protect it; the one thing that still names the page's site is
the `Host` header. A listener that needs no token therefore answers only to the names it is reached by:

- loopback: `localhost`, `127.0.0.1`, `[::1]` (any spelling of these addresses);
- the `--host` it binds, and the host of `--public-url`;
- every `--allowed-host` (exact names, `*.example.com` for a domain's subdomains, `*` for any Host);
- bound to every interface (`--host 0.0.0.0` or `::`): also any IP-address literal (a page can only be
  rebound through a *name*: a Host that is an address is the page's own address) and the machine's
  hostname. Other names the machine is reached by (a load balancer's, a reverse proxy's) need
  `--allowed-host`.

A listener that needs a token (the web port with `--api-token`, OTLP/HTTP with `--ingest-token`) serves
any Host: a rebound page cannot send the token, and the browser keeps the login cookie for the real name.
The port in a Host is not compared (a reverse proxy may show its own). A request without Host (HTTP/1.0)
cannot come from a browser and is served. Starlette's TrustedHostMiddleware matches names the same way but
answers in plain text and has no rule for address literals, so this small guard is ours.
"""
from __future__ import annotations

import functools
import ipaddress
import socket
from dataclasses import dataclass
from typing import Callable, Iterable, Optional
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

WILDCARD_BINDS = ("0.0.0.0", "::", "")
LOOPBACK = ("localhost", "127.0.0.1", "::1")


def _address(host: str) -> Optional[ipaddress._BaseAddress]:
    """`host` as an IP address (IPv4-mapped IPv6 as IPv4), or None for a name."""
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def split_host(value: str) -> Optional[str]:
    """The host part of a Host header value, lower-cased, without port or IPv6 brackets; None when malformed.

    `Example.COM:8000` → `example.com`, `[::1]:8000` → `::1`, `[::1` → None."""
    value = value.strip().lower()
    if not value:
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or (value[end + 1:] and not (value[end + 1] == ":" and value[end + 2:].isdigit())):
            return None
        inner = value[1:end]
        return inner if _address(inner) is not None else None
    host, sep, port = value.partition(":")
    if sep and not port.isdigit():
        return None
    return host or None


@dataclass(frozen=True)
class HostRule:
    """The Hosts one listener answers to. `names`: exact host names/addresses (lower case, no brackets);
    `suffixes`: `.example.com` for `*.example.com`; `any_address`: any IP literal (wildcard binds);
    `any_host`: everything (`--allowed-host '*'`)."""
    names: frozenset
    suffixes: tuple = ()
    any_address: bool = False
    any_host: bool = False

    def allows(self, host_header: Optional[str]) -> bool:
        """True when a request with this Host header value may be served (None: no Host header)."""
        if self.any_host or host_header is None:
            return True
        host = split_host(host_header)
        if host is None:
            return False
        addr = _address(host)
        if addr is not None:
            return self.any_address or str(addr) in self.names
        return host in self.names or any(host.endswith(s) for s in self.suffixes)

    def describe(self) -> str:
        """The allowed Hosts as a short human-readable list (for error messages and logs)."""
        if self.any_host:
            return "any host"
        parts = sorted(self.names) + [f"*{s}" for s in self.suffixes]
        if self.any_address:
            parts.append("any IP address")
        return ", ".join(parts)


def host_rule(bind_host: str, allowed: Iterable[str] = (), public_url: Optional[str] = None,
              hostname: Optional[str] = None) -> HostRule:
    """The Hosts a listener bound to `bind_host` answers to (module docstring). `hostname` defaults to
    socket.gethostname() and counts only for a wildcard bind. Raises ValueError for a malformed pattern."""
    names, suffixes, any_host = set(), [], False
    wildcard = bind_host.strip().strip("[]") in WILDCARD_BINDS

    def add(name: str) -> None:
        name = name.strip().lower().strip("[]")
        addr = _address(name)
        names.add(str(addr) if addr is not None else name)

    for n in LOOPBACK:
        add(n)
    if not wildcard:
        add(bind_host)
    else:
        host = (hostname if hostname is not None else socket.gethostname()).lower()
        if host:
            add(host)
            add(host.split(".", 1)[0])
    if public_url:
        pub = urlsplit(public_url).hostname
        if pub:
            add(pub)
    for pattern in allowed:
        p = pattern.strip().lower()
        if p == "*":
            any_host = True
        elif p.startswith("*."):
            if "*" in p[1:] or len(p) < 3:
                raise ValueError(f"allowed host {pattern!r}: a wildcard must be '*' or like '*.example.com'")
            suffixes.append(p[1:])
        elif "*" in p or not p or "/" in p:
            raise ValueError(f"allowed host {pattern!r}: give a name or address without scheme or path "
                             "('tasktrail.example.com', '10.0.0.5', '*.example.com' or '*')")
        else:
            bare = split_host(p) if (p.startswith("[") or p.count(":") == 1) else p
            if bare is None:
                raise ValueError(f"allowed host {pattern!r} is not a host name or address")
            add(bare)
    return HostRule(frozenset(names), tuple(suffixes), any_address=wildcard, any_host=any_host)


Refusal = Callable[[int, str], tuple[str, bytes]]  # (status, message) -> (content type, body)


class HostGuard:
    """ASGI middleware: requests whose Host `rule` does not allow get 400 with `refusal`'s body (the
    listener's one error shape) and never reach `app`."""

    def __init__(self, app: ASGIApp, rule: HostRule, refusal: Refusal) -> None:
        self.app = app
        self.rule = rule
        self.refusal = refusal
        # The rule's answer per Host value: a client sends the same one on every request (parsing it as an
        # address took ~3.6 µs); values of a DNS name's length at most, and a bounded number of them.
        self.allowed = functools.lru_cache(maxsize=256)(rule.allows)

    def allows(self, host: Optional[str]) -> bool:
        """rule.allows(host), remembered for the last 256 short values."""
        return self.allowed(host) if host is None or len(host) <= 260 else self.rule.allows(host)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not self.rule.any_host:
            host = None
            for k, v in scope["headers"]:
                if k == b"host":
                    host = v.decode("latin-1")
                    break
            if not self.allows(host):
                # The allowed names are not listed: a rebound page reads this answer.
                content_type, body = self.refusal(
                    400, f"this server does not answer to Host {host!r} (DNS rebinding protection); "
                         "start it with --allowed-host NAME to serve that name")
                await send({"type": "http.response.start", "status": 400,
                            "headers": [(b"content-type", content_type.encode()),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
