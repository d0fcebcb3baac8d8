"""brokerkit's core: the interface, messages, options, URLs, capabilities, errors,
topic rules and the plugin registry. Imports no broker client library."""
