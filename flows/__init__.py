"""When, where, how reliably: the Prefect flows. Nothing imports this package."""

import os

# Offline by default: no telemetry from the client or the (temporary) server.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Torch's OpenMP threads sleep instead of spinning while they wait: on a machine shared with
# other work (a Prefect worker running several flows) spinning made the demo 3 times slower
# (116 s vs 40 s, 2 cores, measured). Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Every torch.load in this process refuses pickle code, even where a library asks for it
# (Opacus's checkpoint loader does): checkpoints are tensors and plain containers only.
os.environ.setdefault("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "1")
