"""The README's demo: order.created events shared by two notification service instances.

    python examples/order_notifications.py [URL]      # default: $BROKERKIT_URL or memory://

The logic lives in brokerkit/demo.py (so that 'brokerkit demo' runs the very same code):
an order service publishes JSON order.created events; two instances of a notification
service consume them through the queue group "notifications" and ack each one by hand
after notifying the customer. Exit status 0 once every order was notified exactly once.
"""

import asyncio
import os
import sys

from brokerkit.demo import run_demo

url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("BROKERKIT_URL", "memory://")
sys.exit(0 if asyncio.run(run_demo(url)) else 1)
