"""Runs brokerkit's contract suite (brokerkit/contract) against the chosen broker URLs.

Choose URLs with ``--broker-url`` (repeatable) or ``BROKERKIT_TEST_URLS``; the test
script passes every built-in URL kind.
"""

from brokerkit.contract import *  # noqa: F403
