"""Shared test configuration: pytester for testing brokerkit's own pytest plugin."""

pytest_plugins = ["pytester"]
