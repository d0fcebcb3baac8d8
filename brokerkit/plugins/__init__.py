"""The built-in plugins. Each module is registered through an entry point in the
``brokerkit`` group exactly as a third-party plugin would be, and imports its client
library only when a broker connects."""
