"""What both Redis schemes share: URL and option handling, the client, error mapping."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from brokerkit.core.errors import (
    AuthenticationError,
    BrokerConnectionError,
    BrokerkitError,
    InvalidOptionError,
    InvalidURLError,
)
from brokerkit.core.options import OptionSpec, as_bool, as_str

if TYPE_CHECKING:
    from brokerkit.core.broker import Broker
    from brokerkit.core.url import BrokerURL

DEFAULT_PORT = 6379

log = logging.getLogger("brokerkit.redis")

#: Options of every Redis scheme.
COMMON_REDIS_OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "prefix",
        as_str,
        "bk:",
        "prefix of the Redis key (stream) or channel of a topic: PREFIX + topic",
    ),
    OptionSpec("tls_ca", as_str, None, "CA certificate file (PEM) for rediss://"),
    OptionSpec("tls_cert", as_str, None, "client certificate file (PEM) for rediss://"),
    OptionSpec("tls_key", as_str, None, "client private key file (PEM) for rediss://"),
    OptionSpec(
        "tls_verify",
        as_bool,
        True,
        "verify the server certificate and host name (rediss://); false only for tests",
    ),
)

_TLS_OPTIONS = ("tls_ca", "tls_cert", "tls_key")


def client_kwargs(url: BrokerURL, options: dict[str, object]) -> dict[str, Any]:
    """Keyword arguments for ``redis.asyncio.Redis`` from a validated URL and options.

    Pure; raises :class:`InvalidURLError` (several hosts, a path that is not a database
    number) or :class:`InvalidOptionError` (TLS files on a plain ``redis://`` URL).
    """
    hosts = url.host_ports()
    if len(hosts) != 1:
        raise InvalidURLError(
            f"{url.redacted()}: {url.scheme}:// takes exactly one host (Redis Cluster and "
            "Sentinel are not supported)"
        )
    host, port = hosts[0]
    if host.startswith("["):
        host = host[1:-1]
    path = url.path.strip("/")
    if path and not (path.isascii() and path.isdigit()):
        raise InvalidURLError(
            f"{url.redacted()}: the path must be a Redis database number, got {path!r}"
        )
    tls = url.scheme.startswith("rediss")
    if not tls:
        given = [name for name in _TLS_OPTIONS if options.get(name) is not None]
        if given:
            raise InvalidOptionError(
                f"option {given[0]} needs a TLS URL: use rediss:// instead of {url.scheme}://"
            )
    timeout = float(options.get("connect_timeout", 10.0))  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {
        "host": host,
        "port": port,
        "db": int(path or 0),
        "username": url.username or None,
        "password": url.password,
        "protocol": 2,
        "decode_responses": False,
        "socket_connect_timeout": timeout,
    }
    if tls:
        verify = bool(options.get("tls_verify", True))
        kwargs.update(
            ssl=True,
            ssl_ca_certs=options.get("tls_ca"),
            ssl_certfile=options.get("tls_cert"),
            ssl_keyfile=options.get("tls_key"),
            ssl_cert_reqs="required" if verify else "none",
            ssl_check_hostname=verify,
        )
    return kwargs


def translate(
    broker: Broker, cls: type[BrokerkitError], doing: str, exc: BaseException
) -> BrokerkitError:
    """A brokerkit error for a redis-py exception; the password is scrubbed.

    Refused credentials become :class:`AuthenticationError`, lost or refused connections
    :class:`BrokerConnectionError`, anything else ``cls``. Raise the result outside the
    ``except`` block (or ``from None``) so the client's exception is not chained.
    """
    from redis import exceptions as rexc

    if isinstance(exc, BrokerkitError):
        return exc
    text = str(exc)
    if isinstance(exc, rexc.AuthenticationError) or text.startswith(("WRONGPASS", "NOAUTH")):
        return broker.error(AuthenticationError, doing, exc)
    if isinstance(exc, (rexc.ConnectionError, rexc.TimeoutError, OSError)):
        return broker.error(BrokerConnectionError, doing, exc)
    return broker.error(cls, doing, exc)


def new_client(kwargs: dict[str, Any], **extra: Any) -> Any:
    """An unconnected ``redis.asyncio.Redis`` client for :func:`client_kwargs` output.

    Connection errors are retried 3 times with a short backoff (redis-py's default backs
    off for seconds, and also retries refused credentials, which delays the error).
    """
    import redis.asyncio
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialWithJitterBackoff

    retry = Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), 3)
    return redis.asyncio.Redis(**kwargs, **extra, retry=retry)


async def open_client(broker: Broker, kwargs: dict[str, Any]) -> Any:
    """Create a ``redis.asyncio.Redis`` client and check it with PING (and AUTH).

    Raises :class:`AuthenticationError` for refused credentials and
    :class:`BrokerConnectionError` otherwise; the client is closed on failure. The raised
    error has no chained client exception, so it cannot leak the password.
    """
    client = new_client(kwargs)
    failure: BrokerkitError | None = None
    try:
        await client.ping()
    except Exception as exc:
        failure = translate(broker, BrokerConnectionError, "connect", exc)
    if failure is not None:
        await close_client(client)
        raise failure
    return client


async def close_client(client: Any) -> None:
    """Close a client and its connection pool, ignoring errors. Idempotent."""
    try:
        await client.aclose()
    except Exception as exc:  # closing a broken connection may fail; nothing left to do
        log.debug("closing a Redis client failed: %s", type(exc).__name__)


#: Commands per pipeline round trip in ``publish_many``.
PIPELINE_CHUNK = 1000


async def send_pipelined(client: Any, commands: Iterable[tuple[Any, ...]]) -> None:
    """Send ``commands`` (each ``(name, *args)``) in order, in pipelines without a
    transaction of :data:`PIPELINE_CHUNK` commands each; return once Redis answered
    them all. Raises the client's exception (the first failing command's) untranslated;
    the commands of earlier pipelines have then been executed."""
    pipe = None
    queued = 0
    for command in commands:
        if pipe is None:
            pipe = client.pipeline(transaction=False)
        pipe.pipeline_execute_command(*command)
        queued += 1
        if queued == PIPELINE_CHUNK:
            await pipe.execute()
            pipe, queued = None, 0
    if pipe is not None:
        await pipe.execute()


def glob_escape(text: str) -> str:
    """Escape Redis glob specials (``* ? [ ] \\``) so ``text`` matches only itself."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
