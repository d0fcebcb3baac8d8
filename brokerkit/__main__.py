"""``python -m brokerkit``: the same as the ``brokerkit`` command."""

from brokerkit.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
