"""What the release's columns say they hold: the last step on the synthetic rows before
they are checked and published (``finish``)."""

from __future__ import annotations

import pandas as pd

from schemas import Schema


def finish(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """The synthetic rows as the release shows them."""
    return frame
