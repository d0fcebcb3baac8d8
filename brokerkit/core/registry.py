"""The plugin registry and :func:`connect`: from a URL to a broker.

Plugins are found through entry points in the ``brokerkit`` group (see
:mod:`brokerkit.core.hookspecs`); each declares its schemes with a :class:`SchemeSpec`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import pluggy

from brokerkit.core import hookspecs
from brokerkit.core.broker import Broker
from brokerkit.core.capabilities import Capability
from brokerkit.core.errors import (
    BrokerkitError,
    InvalidURLError,
    PluginNotInstalledError,
    UnknownSchemeError,
)
from brokerkit.core.options import COMMON_OPTIONS, OptionSpec, resolve_options
from brokerkit.core.url import BrokerURL, parse_url

BrokerFactory = Callable[[BrokerURL, dict[str, object], "SchemeSpec"], Broker]

DEFAULT_URL = "memory://"
URL_ENV = "BROKERKIT_URL"


@dataclass(frozen=True)
class SchemeSpec:
    """What a plugin declares about one URL scheme.

    scheme
        The URL scheme, lower case (``"nats+jetstream"``).
    factory
        Builds the (unconnected) broker: ``factory(url, options, spec)``; usually the
        :class:`Broker` subclass itself. Must not need the client library until
        ``connect``.
    capabilities
        What the broker promises; see :class:`Capability`.
    description
        One line for ``brokerkit plugins``.
    options
        Plugin options accepted as URL query parameters or keywords (the common
        ``drain_timeout`` and ``connect_timeout`` are added by the registry).
    requires
        Importable module names of the client library, checked before ``factory``.
    extra
        The ``pip install 'brokerkit[extra]'`` that provides ``requires`` (or a full
        ``pip install`` argument for third-party plugins).
    default_port
        Filled in for hosts given without a port.
    needs_host
        Whether the URL must name at least one host.
    """

    scheme: str
    factory: BrokerFactory
    capabilities: frozenset[Capability]
    description: str = ""
    options: tuple[OptionSpec, ...] = ()
    requires: tuple[str, ...] = ()
    extra: str | None = None
    default_port: int | None = None
    needs_host: bool = True
    plugin: str = field(default="", compare=False)

    @property
    def all_options(self) -> tuple[OptionSpec, ...]:
        """The plugin's options plus the options every broker accepts."""
        return COMMON_OPTIONS + self.options

    def missing_requirements(self) -> list[str]:
        """The ``requires`` modules that cannot be imported here."""
        missing = []
        for module in self.requires:
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                missing.append(module)
        return missing

    def install_hint(self) -> str:
        """The pip command that provides the client library."""
        if self.extra is None:
            return "pip install " + " ".join(self.requires)
        if " " in self.extra or "/" in self.extra:
            return f"pip install {self.extra}"
        return f"pip install 'brokerkit[{self.extra}]'"


class PluginRegistry:
    """The installed plugins and their schemes.

    Loads entry points of the ``brokerkit`` group once, lazily; further plugins can be
    added with :meth:`register` (for example in tests). Thread-safe loading; lookups are
    read-only afterwards.
    """

    def __init__(self, *, load_entry_points: bool = True) -> None:
        self._manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._manager.add_hookspecs(hookspecs)
        self._load_entry_points = load_entry_points
        self._loaded = False
        self._lock = threading.Lock()
        self._schemes: dict[str, SchemeSpec] = {}

    @property
    def manager(self) -> pluggy.PluginManager:
        """The underlying pluggy plugin manager."""
        return self._manager

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register a plugin object (module or instance with ``@hookimpl`` functions).

        Raises :class:`BrokerkitError` if it declares a scheme another plugin declared.
        """
        self._ensure_loaded()
        with self._lock:
            self._manager.register(plugin, name=name)
            self._collect()

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            if self._load_entry_points:
                self._manager.load_setuptools_entrypoints(hookspecs.PROJECT_NAME)
            self._collect()
            self._loaded = True

    def _collect(self) -> None:
        schemes: dict[str, SchemeSpec] = {}
        for impl in self._manager.hook.brokerkit_schemes.get_hookimpls():
            plugin_name = impl.plugin_name
            specs: Iterable[SchemeSpec] = impl.function()  # type: ignore[assignment]
            for spec in specs:
                name = spec.scheme.lower()
                if name in schemes:
                    raise BrokerkitError(
                        f"the scheme {name}:// is declared by two plugins: "
                        f"{schemes[name].plugin!r} and {plugin_name!r}"
                    )
                schemes[name] = _with_plugin(spec, plugin_name)
        self._schemes = schemes

    def schemes(self) -> dict[str, SchemeSpec]:
        """Every installed scheme and its spec (whether or not its client is installed)."""
        self._ensure_loaded()
        return dict(self._schemes)

    def spec_for(self, scheme: str) -> SchemeSpec:
        """The spec for ``scheme``; raises :class:`UnknownSchemeError` listing the others."""
        self._ensure_loaded()
        try:
            return self._schemes[scheme]
        except KeyError:
            installed = ", ".join(f"{s}://" for s in sorted(self._schemes)) or "none"
            raise UnknownSchemeError(
                f"no installed plugin provides {scheme}://; installed schemes: {installed}"
            ) from None

    def create(self, url: str | BrokerURL, **options: object) -> Broker:
        """Build an unconnected broker for ``url``; see :func:`connect`."""
        parsed = url if isinstance(url, BrokerURL) else parse_url(url)
        spec = self.spec_for(parsed.scheme)
        missing = spec.missing_requirements()
        if missing:
            raise PluginNotInstalledError(
                f"{parsed.scheme}:// needs the client library {', '.join(missing)}, which "
                f"is not installed: {spec.install_hint()}"
            )
        if spec.needs_host and not parsed.hosts:
            raise InvalidURLError(
                f"{parsed.redacted()}: no host given; expected "
                f"{parsed.scheme}://host[:port][,host[:port]...]"
            )
        if spec.default_port is not None:
            parsed = parsed.with_default_port(spec.default_port)
        resolved = resolve_options(spec.all_options, parsed.query, options, parsed.scheme)
        return spec.factory(parsed, resolved, spec)


def _with_plugin(spec: SchemeSpec, plugin_name: str) -> SchemeSpec:
    if spec.plugin:
        return spec
    from dataclasses import replace

    return replace(spec, plugin=plugin_name)


_default_registry: PluginRegistry | None = None


def default_registry() -> PluginRegistry:
    """The process-wide registry of entry-point plugins, created on first use."""
    global _default_registry
    if _default_registry is None:
        _default_registry = PluginRegistry()
    return _default_registry


def connect(
    url: str | None = None,
    *,
    registry: PluginRegistry | None = None,
    **options: object,
) -> Broker:
    """Return a broker for ``url``, ready to be connected.

    ``url`` defaults to the ``BROKERKIT_URL`` environment variable, then ``memory://``.
    Keyword ``options`` override the URL's query options. Use the result as
    ``async with connect(url) as broker:`` or ``broker = await connect(url)``; both
    connect it.

    Raises (before any network traffic) :class:`InvalidURLError`,
    :class:`UnknownSchemeError` (listing installed schemes),
    :class:`PluginNotInstalledError` (naming the ``pip install`` that fixes it) and
    :class:`InvalidOptionError` (listing the known options).
    """
    if url is None:
        url = os.environ.get(URL_ENV) or DEFAULT_URL
    return (registry or default_registry()).create(url, **options)


def plugin_version(spec: SchemeSpec) -> str:
    """The version of the distribution that provides ``spec``'s plugin, or ``"unknown"``."""
    name = spec.plugin
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group == hookspecs.PROJECT_NAME and ep.name == name:
                return dist.version
    return "unknown"


def scheme_table(registry: PluginRegistry | None = None) -> Mapping[str, SchemeSpec]:
    """Every installed scheme, sorted by name."""
    schemes = (registry or default_registry()).schemes()
    return {name: schemes[name] for name in sorted(schemes)}
