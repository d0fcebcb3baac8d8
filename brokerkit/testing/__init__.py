"""Test support: the pytest plugin and helpers for tests that use brokerkit."""
