"""Run brokerkit's whole contract suite against this plugin: these lines are all it takes.

pytest tests                                      # against the local Mosquitto
pytest tests --broker-url mqtt://other-host:1883  # or anywhere else
"""

import os

from brokerkit.contract import *  # noqa: F403  (every contract test, with its fixtures)

os.environ.setdefault("BROKERKIT_TEST_URLS", "mqtt://127.0.0.1:1883")
