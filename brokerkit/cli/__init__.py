"""The ``brokerkit`` command (also ``python -m brokerkit``).

Commands: ``plugins``, ``publish``, ``subscribe``, ``check`` and ``demo``; run
``brokerkit COMMAND --help`` for each. Exit status: 0 on success, 1 on an error or an
unmet expectation (a failed check, too few messages), 2 on a usage mistake, 130 when
interrupted. User mistakes and broker errors are reported as one line on stderr, never
as a traceback, and no password is ever printed.

Only the standard library and brokerkit's core are used here; ``check`` runs pytest in a
subprocess.
"""

from brokerkit.cli._app import build_parser, main

__all__ = ["build_parser", "main"]
