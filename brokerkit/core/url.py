"""Broker URLs: parsing, validation and password redaction.

``scheme://[user[:password]@]host[:port][,host[:port]...][/path][?name=value&...]``

* several hosts are separated by commas (``kafka://a:9092,b:9092``);
* the user name, password, path and query are percent-decoded (strictly: a malformed
  escape is an error, not passed through);
* the URL itself must be ASCII: percent-encode other characters, and write
  internationalised host names in IDNA ("punycode") form.

A :class:`BrokerURL` never shows its password: ``str()``, ``repr()`` and
:meth:`BrokerURL.redacted` print ``***`` instead, and :func:`scrub` removes the password
from any text (for example a client library's error message).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from urllib.parse import quote

from brokerkit.core.errors import InvalidURLError

_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_HOSTNAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?")
_IPV6 = re.compile(r"\[[0-9A-Fa-f:.]+\]")
_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_FORMAT = "scheme://[user[:password]@]host[:port][,host[:port]...][/path][?name=value&...]"
REDACTED = "***"


@dataclass(frozen=True)
class BrokerURL:
    """A parsed broker URL. Immutable; safe to share between tasks.

    ``hosts`` holds ``(host, port)`` pairs; ``port`` is ``None`` where the URL gave
    none (the registry fills in the plugin's default port before a plugin sees it).
    ``path`` is decoded and has no leading ``/``. ``query`` maps option names to their
    decoded string values. ``password`` is excluded from ``repr``.
    """

    scheme: str
    hosts: tuple[tuple[str, int | None], ...] = ()
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    path: str = ""
    query: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def redacted(self) -> str:
        """The URL as text with the password replaced by ``***``."""
        text = f"{self.scheme}://"
        if self.username is not None or self.password is not None:
            text += quote(self.username or "", safe="")
            if self.password is not None:
                text += ":" + REDACTED
            text += "@"
        text += ",".join(host if port is None else f"{host}:{port}" for host, port in self.hosts)
        if self.path:
            text += "/" + quote(self.path, safe="/")
        if self.query:
            text += "?" + "&".join(
                f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in self.query.items()
            )
        return text

    def __str__(self) -> str:
        return self.redacted()

    def __repr__(self) -> str:
        return f"BrokerURL({self.redacted()!r})"

    def with_default_port(self, port: int) -> BrokerURL:
        """A copy in which every host without a port gets ``port``."""
        return replace(self, hosts=tuple((h, port if p is None else p) for h, p in self.hosts))

    def host_ports(self) -> list[tuple[str, int]]:
        """``(host, port)`` pairs; raises :class:`InvalidURLError` if a port is missing."""
        result = []
        for host, port in self.hosts:
            if port is None:
                raise InvalidURLError(f"{self.redacted()}: host {host!r} has no port")
            result.append((host, port))
        return result


def _decode(text: str, what: str) -> str:
    """Strict percent-decoding: every ``%`` must start a two-digit hex escape, UTF-8."""
    if _PERCENT.search(text):
        raise InvalidURLError(
            f"the {what} contains a '%' that is not followed by two hex digits; "
            "write '%25' for a literal '%'"
        )
    if "%" not in text:
        return text
    raw = bytearray()
    index = 0
    while index < len(text):
        char = text[index]
        if char == "%":
            raw.append(int(text[index + 1 : index + 3], 16))
            index += 3
        else:
            raw.extend(char.encode("ascii"))
            index += 1
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidURLError(f"the {what} has percent-escapes that are not UTF-8") from None


def _parse_host(text: str, whole: str) -> tuple[str, int | None]:
    if not text:
        raise InvalidURLError(f"{whole}: empty host in the host list; expected {_FORMAT}")
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not _IPV6.fullmatch(text[: end + 1]):
            raise InvalidURLError(f"{whole}: malformed IPv6 host {text!r}")
        host, rest = text[: end + 1], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise InvalidURLError(f"{whole}: unexpected text after IPv6 host {text!r}")
        port_text: str | None = rest[1:] if rest else None
    else:
        host, sep, port_after = text.partition(":")
        port_text = port_after if sep else None
        if not _HOSTNAME.fullmatch(host):
            raise InvalidURLError(
                f"{whole}: invalid host {host!r}; a host is a name of letters, digits, "
                "'-', '_' and '.', an IPv4 address or a bracketed IPv6 address"
            )
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not port_text.isascii() or not 1 <= int(port_text) <= 65535:
        raise InvalidURLError(
            f"{whole}: invalid port {port_text!r} for host {host!r}; "
            "a port is a number from 1 to 65535"
        )
    return host, int(port_text)


def parse_url(text: object) -> BrokerURL:
    """Parse a broker URL. Pure; safe to call concurrently.

    Raises :class:`InvalidURLError` (and nothing else, whatever the input) naming what is
    wrong and the accepted form. The scheme is lower-cased; whether a host is required
    and which options are accepted is checked later, by the plugin's registration.
    """
    if not isinstance(text, str):
        raise InvalidURLError(f"a broker URL must be a str, got {type(text).__name__}")
    if not text:
        raise InvalidURLError(f"the broker URL is empty; expected {_FORMAT}")
    scheme_text, sep, rest = text.partition("://")
    if not sep:
        raise InvalidURLError(f"no '://' in the broker URL; expected {_FORMAT}")
    scheme = scheme_text.lower()
    if not _SCHEME.fullmatch(scheme):
        raise InvalidURLError(
            "invalid URL scheme: a scheme starts with a letter and holds letters, "
            "digits, '+', '-' and '.'"
        )
    # Locate the authority before complaining about characters, so that a bad character
    # in a password is reported without echoing the password.
    end = len(rest)
    for stop in "/?#":
        found = rest.find(stop)
        if found >= 0:
            end = min(end, found)
    authority, tail = rest[:end], rest[end:]
    userinfo, at, hostlist = authority.rpartition("@")
    shown = f"{scheme}://" + ("***@" if at else "") + (hostlist if hostlist.isascii() else "")
    if not hostlist.isascii():
        raise InvalidURLError(
            f"{shown}...: the host contains non-ASCII characters; "
            "write internationalised host names in IDNA (punycode) form"
        )
    if not text.isascii() or any(ord(c) < 33 or c == "\x7f" for c in text):
        raise InvalidURLError(
            f"{shown}...: the URL contains non-ASCII, space or control characters; "
            "percent-encode them"
        )
    if "#" in tail:
        raise InvalidURLError(f"{shown}: URL fragments ('#...') are not used by brokerkit")

    username: str | None = None
    password: str | None = None
    if at:
        user_text, colon, pass_text = userinfo.partition(":")
        username = _decode(user_text, "user name")
        password = _decode(pass_text, "password") if colon else None

    hosts: tuple[tuple[str, int | None], ...] = ()
    if hostlist:
        hosts = tuple(_parse_host(part, shown) for part in hostlist.split(","))

    path_text, _, query_text = tail.partition("?")
    path = _decode(path_text[1:], "path") if path_text.startswith("/") else ""
    query: dict[str, str] = {}
    if query_text:
        for pair in query_text.split("&"):
            if not pair:
                continue
            name_text, _, value_text = pair.partition("=")
            name = _decode(name_text.replace("+", " "), "query")
            if not name:
                raise InvalidURLError(f"{shown}: a query parameter has no name")
            if name in query:
                raise InvalidURLError(f"{shown}: the query option {name!r} is given twice")
            query[name] = _decode(value_text.replace("+", " "), "query")
    return BrokerURL(
        scheme=scheme,
        hosts=hosts,
        username=username,
        password=password,
        path=path,
        query=MappingProxyType(query),
    )


def scrub(text: str, url: BrokerURL | None) -> str:
    """Return ``text`` with every form of ``url``'s password replaced by ``***``.

    Use it on any text that may echo a URL or credentials (client library errors).
    """
    if url is None or not url.password:
        return text
    for form in {url.password, quote(url.password, safe=""), quote(url.password)}:
        if form:
            text = text.replace(form, REDACTED)
    return text
