"""Placeholder while the kafka plugin is written; it declares no scheme yet."""

from brokerkit.core.hookspecs import hookimpl
from brokerkit.core.registry import SchemeSpec


@hookimpl
def brokerkit_schemes() -> list[SchemeSpec]:
    """No schemes yet."""
    return []
