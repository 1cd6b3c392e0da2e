"""Inputs too large to hold as a frame: trained on codes read in batches, checked on samples.

A Parquet input with more rows than ``RunConfig.batch_above_rows`` is never loaded whole. It
is read a batch at a time through the same checks as ``pipelines.ingest`` and encoded as it is
read (``pipelines.batched``) with the synthesizer's own encoder, so the synthesizer trains on
the same codes it would have made from the frame, and memory holds one batch plus compact
codes. The holdout split is the same secret coin per record (``pipelines.holdout``). The
checks that compare the release with real rows (the fidelity suite, the leakage checks) get
uniform random samples of the training rows and of the held-out rows, ``CHECK_ROWS`` in all:
they are statistics of the real data either way, and a sample of that size estimates them
as well as the whole would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from pipelines.batched import code_dtype, ingest_encoded
from pipelines.holdout import held_out
from pipelines.ingest import IngestReport
from schemas import Schema
from synth.encoding import CodedTable, TableEncoder

CHECK_ROWS = 200_000  # real rows kept for the checks (training and held-out together)


@dataclass(frozen=True)
class LargeInput:
    """A large input, ready for a run."""

    train: CodedTable  # the training rows' codes
    real: pd.DataFrame  # a random sample of the training rows, for the checks
    holdout: pd.DataFrame  # a random sample of the held-out rows, for the leakage checks
    report: IngestReport


def rows_of(path: str | Path) -> int | None:
    """The row count a Parquet file's footer states (public metadata of the file, read
    without the data); None for other files."""
    path = Path(path)
    if path.suffix.lower() not in (".parquet", ".pq") or not path.is_file():
        return None
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception:  # noqa: BLE001  unreadable: the ingest says why, with the file's name
        return None


def load_large(path: str | Path, schema: Schema, encoder: TableEncoder, *, holdout: float,
               key: bytes, seed: int, clip: bool = False, map_unknown: bool = False,
               check_rows: int = CHECK_ROWS) -> LargeInput:
    """Reads, checks and encodes the Parquet file ``path`` in batches.

    Raises:
        DataError: as ``pipelines.ingest.ingest`` words it.
    """
    total = rows_of(path) or 0
    rng = np.random.default_rng(seed)  # which rows the internal checks sample
    # drawn a batch at a time (the same draws as one of ``total``, in order): nothing is
    # allocated per row the footer declares before the footer's rows are seen to exist
    rate = min(1.0, check_rows / max(total, 1))
    grids = {encoder.blocks[i].column.name: g for i, g in encoder.fine_grids().items()}
    fine: dict[str, list[np.ndarray]] = {name: [] for name in grids}
    samples: list[pd.DataFrame] = []
    held_parts: list[np.ndarray] = []

    def visit(frame: pd.DataFrame, first: int) -> None:
        kept = rng.random(len(frame)) < rate
        held = held_out(frame, holdout, key)  # each record's own secret coin
        held_parts.append(held)
        train = frame[~held]
        for name, grid in grids.items():
            fine[name].append(grid.encode(train[name]).astype(code_dtype(grid.size)))
        sample = frame[kept].copy()
        sample["__held__"] = held[kept]
        samples.append(sample)

    encoded = ingest_encoded(path, schema, clip=clip, map_unknown=map_unknown,
                             encoder=encoder, visit=visit)
    held = np.concatenate(held_parts) if held_parts else np.zeros(0, bool)
    dtype = np.result_type(*[c.dtype for c in encoded.codes.values()])
    codes = np.empty((int((~held).sum()), len(schema.columns)), dtype)
    for j, name in enumerate(schema.names):
        codes[:, j] = encoded.codes.pop(name)[~held]  # each column freed once copied
    sample = pd.concat(samples, ignore_index=True)
    is_held = sample.pop("__held__").to_numpy(bool)
    return LargeInput(
        train=CodedTable(codes, tuple(encoder.sizes),
                         {name: np.concatenate(parts) for name, parts in fine.items()}),
        real=sample[~is_held].reset_index(drop=True),
        holdout=sample[is_held].reset_index(drop=True), report=encoded.report)
