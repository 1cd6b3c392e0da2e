"""When, where, how reliably: the Prefect flows. Nothing imports this package."""

import os

# Offline by default: no telemetry from the client or the (temporary) server.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
