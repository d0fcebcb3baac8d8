"""brokerkit pytest plugin (filled in below)."""
