"""The private file a draft reads, and the data set's identity it is drafted under."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipelines.errors import DataError
from schemas import DEFAULT_MISSING


def read_table(path: str | Path) -> pd.DataFrame:
    """The file's rows: CSV fields as stripped text, Parquet with its own types; missing
    tokens as NaN, column names stripped.

    Raises:
        DataError: the file is missing, empty or unreadable.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError:
        raise DataError(f"{path}: cannot read input: no such file") from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot read input: {str(exc).splitlines()[0]}") from None
    if frame.empty:
        raise DataError(f"{path}: the file has no data rows")
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame.apply(lambda s: s.str.strip().mask(s.str.strip().isin(DEFAULT_MISSING))
                       if s.dtype == object else s)


def data_set_name(path: str | Path, name: str | None = None) -> str:
    """The data set's identity: ``name``, else the file name up to its first dot."""
    return name or Path(path).name.split(".")[0]
