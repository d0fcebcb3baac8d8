"""Argument parsing and the ``plugins``, ``publish``, ``subscribe`` and ``demo`` commands."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import IO

from brokerkit.core.capabilities import Capability
from brokerkit.core.errors import BrokerkitError, InvalidMessageError
from brokerkit.core.message import Delivery
from brokerkit.core.registry import SchemeSpec, connect, plugin_version, scheme_table
from brokerkit.core.url import parse_url

PROG = "brokerkit"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


class CommandFailed(Exception):
    """An expectation of the command was not met; the message is shown on stderr."""


def _error(text: str) -> None:
    print(f"{PROG}: error: {text}", file=sys.stderr)


def _info(args: argparse.Namespace, text: str) -> None:
    if not getattr(args, "quiet", False):
        print(f"{PROG}: {text}", file=sys.stderr, flush=True)


def _redacted(url: str) -> str:
    try:
        return parse_url(url).redacted()
    except BrokerkitError:
        return "<invalid URL>"


# --- plugins ---------------------------------------------------------------------------


def _is_builtin(spec: SchemeSpec) -> bool:
    module = getattr(spec.factory, "__module__", "") or ""
    return module.startswith("brokerkit.")


def capability_table(specs: Sequence[SchemeSpec]) -> str:
    """A Markdown table: one row per scheme, one column per capability, a check mark or
    a dash."""
    capabilities = list(Capability)
    lines = [
        "| scheme | " + " | ".join(c.value for c in capabilities) + " |",
        "| --- | " + " | ".join(":---:" for _ in capabilities) + " |",
    ]
    for spec in specs:
        marks = ("✓" if c in spec.capabilities else "\u2013" for c in capabilities)
        lines.append(f"| `{spec.scheme}://` | " + " | ".join(marks) + " |")
    return "\n".join(lines)


def cmd_plugins(args: argparse.Namespace) -> int:
    """``brokerkit plugins``: list schemes, or a Markdown capability table."""
    specs = [s for s in scheme_table().values() if not args.builtin or _is_builtin(s)]
    if args.markdown:
        print(capability_table(specs))
        return EXIT_OK
    if not specs:
        print("no brokerkit plugins are installed")
        return EXIT_OK
    for spec in specs:
        missing = spec.missing_requirements()
        if not spec.requires:
            client = "none needed"
        elif missing:
            client = f"MISSING ({', '.join(missing)}): {spec.install_hint()}"
        else:
            client = f"installed ({', '.join(spec.requires)})"
        caps = ", ".join(c.value for c in Capability if c in spec.capabilities) or "none"
        print(f"{spec.scheme}://")
        print(f"  plugin:       {spec.plugin} {plugin_version(spec)}")
        if spec.description:
            print(f"  description:  {spec.description}")
        print(f"  client:       {client}")
        print(f"  capabilities: {caps}")
    return EXIT_OK


# --- publish ---------------------------------------------------------------------------


def _parse_headers(pairs: Sequence[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise InvalidMessageError(f"header {pair!r} is not of the form key=value")
        headers[name] = value
    return headers


async def _publish(args: argparse.Namespace, stdin: IO[bytes]) -> int:
    headers = _parse_headers(args.header) or None
    async with connect(args.url) as broker:
        count = 0
        if args.lines:
            while True:
                line = await asyncio.to_thread(stdin.readline)
                if not line:
                    break
                body = line[:-1] if line.endswith(b"\n") else line
                body = body[:-1] if body.endswith(b"\r") else body
                await broker.publish(args.topic, body, headers=headers, key=args.key)
                count += 1
        else:
            if args.data is None or args.data == "-":
                body = await asyncio.to_thread(stdin.read)
            else:
                body = os.fsencode(args.data)
            await broker.publish(args.topic, body, headers=headers, key=args.key)
            count = 1
    _info(args, f"published {count} message(s) to {args.topic!r} on {_redacted(args.url)}")
    return EXIT_OK


def cmd_publish(args: argparse.Namespace) -> int:
    """``brokerkit publish``: publish DATA, stdin, or each stdin line."""
    if args.lines and args.data not in (None, "-"):
        raise CommandFailed("--lines reads messages from stdin; do not give DATA as well")
    if args.data in (None, "-") and sys.stdin.isatty():
        _info(args, "reading the message body from stdin (end with Ctrl-D)")
    return _run(_publish(args, sys.stdin.buffer))


# --- subscribe -------------------------------------------------------------------------


def delivery_json(delivery: Delivery) -> str:
    """One delivery as a JSON object on one line (the ``subscribe --json`` format).

    ``body`` is the UTF-8 text of the body, or its base64 when it is not valid UTF-8
    (then ``body_base64`` is true).
    """
    message = delivery.message
    try:
        body, is_base64 = message.body.decode("utf-8"), False
    except UnicodeDecodeError:
        body, is_base64 = base64.b64encode(message.body).decode("ascii"), True
    return json.dumps(
        {
            "topic": delivery.topic,
            "body": body,
            "body_base64": is_base64,
            "headers": message.headers,
            "id": message.id,
            "key": message.key,
            "attempt": delivery.attempt,
            "timestamp": message.timestamp,
        },
        ensure_ascii=False,
    )


async def _subscribe(args: argparse.Namespace) -> int:
    out = sys.stdout.buffer
    wanted: int | None = args.count
    received = 0
    enough = asyncio.Event()
    stop = asyncio.Event()
    interrupted = False
    reader_gone = False

    def on_signal() -> None:
        nonlocal interrupted
        interrupted = True
        stop.set()

    broker = connect(args.url)
    manual = Capability.ACK in broker.capabilities

    async def handle(delivery: Delivery) -> None:
        nonlocal received
        if wanted is not None and received >= wanted:
            return  # beyond --count: left unacked, so the broker keeps it for others
        line = delivery_json(delivery).encode() if args.json else delivery.message.body
        try:
            out.write(line + b"\n")
            out.flush()
        except BrokenPipeError:  # e.g. '| head -1' exited: stop, leave the message unacked
            nonlocal reader_gone
            reader_gone = True
            stop.set()
            return
        received += 1
        if manual:
            await delivery.ack()
        if wanted is not None and received >= wanted:
            enough.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on POSIX
            loop.add_signal_handler(sig, on_signal)
    async with broker:
        subscription = await broker.subscribe(
            args.topic,
            handle,
            queue=args.queue,
            durable=args.durable,
            start="earliest" if args.from_earliest else "new",
            ack="manual" if manual else "auto",
        )
        _info(args, f"subscribed to {args.topic!r} on {_redacted(args.url)}")
        if wanted == 0:
            enough.set()
        waiters = [asyncio.ensure_future(enough.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=args.timeout, return_when="FIRST_COMPLETED")
        finally:
            for waiter in waiters:
                waiter.cancel()
            await subscription.unsubscribe()
    if interrupted:
        return EXIT_INTERRUPTED
    if reader_gone:
        _silence_stdout()
        return EXIT_OK
    if wanted is not None and received < wanted:
        raise CommandFailed(f"received {received} of {wanted} message(s) within {args.timeout}s")
    return EXIT_OK


def cmd_subscribe(args: argparse.Namespace) -> int:
    """``brokerkit subscribe``: print messages; see the parser's help."""
    if args.count is not None and args.count < 0:
        raise CommandFailed("--count must be 0 or more")
    if args.timeout is not None and args.timeout <= 0:
        raise CommandFailed("--timeout must be more than 0 seconds")
    return _run(_subscribe(args))


# --- demo ------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    """``brokerkit demo``: run :func:`brokerkit.demo.run_demo`."""
    from brokerkit.demo import run_demo

    ok = _run_value(run_demo(args.url, orders=args.orders, timeout=args.timeout))
    if not ok:
        raise CommandFailed("the demo did not notify every order exactly once")
    return EXIT_OK


# --- check -----------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    """``brokerkit check``: run the contract suite; see :mod:`._check`."""
    from brokerkit.cli._check import run_check

    return run_check(
        args.url, timeout=args.timeout, select=args.select, verbose=args.verbose, out=sys.stdout
    )


# --- plumbing --------------------------------------------------------------------------


def _silence_stdout() -> None:
    # After the reader of stdout went away, keep the interpreter's final flush quiet.
    with contextlib.suppress(OSError):
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives until the process exits


def _run(coroutine: object) -> int:
    result = _run_value(coroutine)
    assert isinstance(result, int)
    return result


def _run_value(coroutine: object) -> object:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``brokerkit`` command (pure; builds a new one)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Publish, subscribe, list plugins and certify brokers with brokerkit.",
        epilog="Run 'brokerkit COMMAND --help' for a command's options. URLs look like "
        "memory://, nats://127.0.0.1:4222, redis://127.0.0.1:6379/0.",
    )
    from brokerkit import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level",
        default="ERROR",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="show log messages of brokerkit and its plugins from this level (default ERROR)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    plugins = commands.add_parser(
        "plugins",
        help="list installed plugins, their schemes and capabilities",
        description="List every installed scheme: its plugin, version, capabilities and "
        "whether its client library is installed.",
    )
    plugins.add_argument(
        "--markdown", action="store_true", help="print a Markdown capability table instead"
    )
    plugins.add_argument(
        "--builtin", action="store_true", help="only the plugins shipped with brokerkit"
    )
    plugins.set_defaults(func=cmd_plugins)

    publish = commands.add_parser(
        "publish",
        help="publish a message",
        description="Publish DATA (or standard input) to TOPIC.",
    )
    publish.add_argument("url", metavar="URL", help="broker URL")
    publish.add_argument("topic", metavar="TOPIC", help="topic, e.g. user.created")
    publish.add_argument(
        "data",
        metavar="DATA",
        nargs="?",
        help="message body; '-' or omitted: read all of stdin as one body",
    )
    publish.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a message header (repeatable)",
    )
    publish.add_argument("--key", help="ordering / partition key")
    publish.add_argument(
        "--lines", action="store_true", help="publish each line of stdin as one message"
    )
    publish.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    publish.set_defaults(func=cmd_publish)

    subscribe = commands.add_parser(
        "subscribe",
        help="print messages as they arrive",
        description="Subscribe to TOPIC (wildcards '*' and '>' allowed where the broker "
        "supports them) and print each message body on its own line, or one JSON object "
        "per line with --json. Messages are acked after they are printed.",
    )
    subscribe.add_argument("url", metavar="URL", help="broker URL")
    subscribe.add_argument("topic", metavar="TOPIC", help="topic or pattern")
    subscribe.add_argument("--queue", help="join this queue group (competing consumers)")
    subscribe.add_argument("--durable", help="durable name: resume where it left off")
    subscribe.add_argument(
        "--from-earliest", action="store_true", help="replay retained messages first"
    )
    subscribe.add_argument("--count", type=int, metavar="N", help="exit after N messages")
    subscribe.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="stop after SECONDS; with --count, fail if fewer than N arrived",
    )
    subscribe.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per line: topic, body (base64 if not UTF-8, with "
        "body_base64), headers, id, key, attempt, timestamp",
    )
    subscribe.add_argument(
        "-q", "--quiet", action="store_true", help="no 'subscribed' notice on stderr"
    )
    subscribe.set_defaults(func=cmd_subscribe)

    check = commands.add_parser(
        "check",
        help="run the contract suite against a broker",
        description="Run brokerkit's contract suite against URL and print capability -> "
        "passed / failed / skipped. Exit status 0 only if no test failed. Needs pytest "
        "and pytest-asyncio (pip install 'brokerkit[test]').",
    )
    check.add_argument("url", metavar="URL", help="broker URL to certify")
    check.add_argument(
        "--timeout",
        type=_positive_float,
        default=120.0,
        metavar="SECONDS",
        help="time limit per test (default 120)",
    )
    check.add_argument("-k", dest="select", metavar="EXPR", help="only tests matching EXPR")
    check.add_argument("-v", "--verbose", action="store_true", help="show pytest's output")
    check.set_defaults(func=cmd_check)

    demo = commands.add_parser(
        "demo",
        help="run the order-notification demo",
        description="An order service publishes order.created events; two notification "
        "service instances share them through the queue group 'notifications' with "
        "manual ack. Succeeds once every order was notified exactly once.",
    )
    demo.add_argument("url", metavar="URL", nargs="?", default="memory://", help="broker URL")
    demo.add_argument("--orders", type=int, default=6, help="number of orders (default 6)")
    demo.add_argument(
        "--timeout", type=_positive_float, default=20.0, help="seconds to wait (default 20)"
    )
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``brokerkit`` command; returns the exit status (see the module docstring).

    Raises ``SystemExit`` only for ``--help``, ``--version`` and usage errors (argparse).
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format=f"{PROG}: %(levelname)s: %(name)s: %(message)s"
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (BrokerkitError, CommandFailed) as exc:
        _error(str(exc) or type(exc).__name__)
        return EXIT_FAILED
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (e.g. 'brokerkit plugins | head -1'): not an error.
        _silence_stdout()
        return EXIT_OK
