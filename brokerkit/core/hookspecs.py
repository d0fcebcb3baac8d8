"""Hook specifications for brokerkit plugins (pluggy project name ``brokerkit``).

A plugin is a module (or object) with functions marked ``@hookimpl`` and named as the
specifications below. It is found through an entry point in the ``brokerkit`` group::

    [project.entry-points.brokerkit]
    mqtt = "brokerkit_mqtt"

The built-in plugins are registered in exactly the same way, from brokerkit's own
``pyproject.toml``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from brokerkit.core.registry import SchemeSpec

PROJECT_NAME = "brokerkit"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def brokerkit_schemes() -> Sequence[SchemeSpec]:
    """Return the URL schemes this plugin provides, one :class:`SchemeSpec` each.

    Called once, when the registry loads the installed plugins; the results of all
    plugins are collected (not first-result). Two plugins declaring the same scheme are
    an error naming both.

    The implementation must be cheap and must **not** import the broker's client
    library: list the modules it needs in ``SchemeSpec.requires`` instead, and import
    them inside the broker's methods. That keeps ``import brokerkit`` and
    ``brokerkit plugins`` working when a client library is not installed.

    :return: a sequence of :class:`brokerkit.SchemeSpec`.

    Example::

        @hookimpl
        def brokerkit_schemes():
            return [SchemeSpec(scheme="mqtt", factory=MqttBroker, ...)]
    """
    raise NotImplementedError  # a specification has no body of its own
