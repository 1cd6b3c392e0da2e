"""Encodes a table as one categorical code per column, from the schema alone.

Every column becomes a block of discrete states: a categorical column's declared categories,
a boolean's false/true, or a numeric/temporal column's bins over its declared bounds (exact
integer values when the range is small, else equal-width bins, on a log scale when the schema
says ``transform: log``). A nullable column gets one more state for "missing". Nothing here is
fitted to the rows: the encoder is a pure function of the schema, so encoding costs no privacy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from schemas import Column, Schema, pandas_dtype

DEFAULT_MAX_BINS = 100
NS_PER_DAY = 86_400 * 10**9


@dataclass(frozen=True)
class CodedTable:
    """A private table that arrives already encoded (read in batches, never a frame): what
    ``TableEncoder.encode`` would give, in a compact unsigned dtype, plus the fine states of
    the columns with a fine grid (their non-missing values, in row order). Synthesizers
    take it wherever they take a frame.

    Attributes:
        codes: (rows, columns) codes of an encoder with block sizes ``sizes``.
        sizes: the block sizes the codes were made with (checked against the synthesizer's).
        fine: column name -> fine states (``FineGrid.encode`` of its non-missing values).
    """

    codes: np.ndarray
    sizes: tuple[int, ...]
    fine: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.codes)


@dataclass(frozen=True)
class Block:
    """The discrete states of one column.

    Attributes:
        column: the schema column.
        edges: bin edges in the transformed numeric space (numeric/temporal columns), else None.
        integer_values: True when each bin is exactly one integer value.
        size: number of states, including the missing state.
    """

    column: Column
    edges: np.ndarray | None
    integer_values: bool
    size: int

    @property
    def n_values(self) -> int:
        """States that are values (all but the trailing missing state)."""
        return self.size - int(self.column.nullable)


@dataclass(frozen=True)
class FineGrid:
    """Finer states of a binned numeric or temporal column, each inside one coarse bin.

    A noisy 1-way histogram over them tells the decoder where inside a bin values lie (the
    spike at 40 hours a week inside the bin 35-40), instead of spreading them uniformly.
    Whole-valued columns of at most ``max_values`` values get one state per value; others
    ``per_bin`` equal-width states per bin (in the transformed space, so nested in the bins).

    Attributes:
        block: the column's coarse block.
        coarse: (states,) the coarse bin of each fine state.
        values: (states,) the value of each state, or None when states are intervals.
        edges: (states + 1,) interval edges in the transformed space, or None.
    """

    block: Block
    coarse: np.ndarray
    values: np.ndarray | None
    edges: np.ndarray | None

    @property
    def size(self) -> int:
        return len(self.coarse)

    def encode(self, values: pd.Series | np.ndarray) -> np.ndarray:
        """Fine states of the non-missing values: (non-missing rows,) int64; an array is
        taken as fine states already (a CodedTable's)."""
        if isinstance(values, np.ndarray):
            return values
        col = self.block.column
        present = values.dropna()
        x = _to_number(col, present.astype("float64") if col.is_numeric else present)
        if self.values is not None:
            codes = np.searchsorted(self.values, np.floor(np.asarray(x) + 0.5))
        else:
            codes = np.searchsorted(self.edges, _forward(col, np.asarray(x)), side="right") - 1
        return np.clip(codes, 0, self.size - 1).astype("int64")

    def place(self, codes: np.ndarray, weights: np.ndarray, rng: np.random.Generator
              ) -> np.ndarray:
        """Numbers (the column's numeric space) for coarse ``codes`` of values (not missing):
        a fine state drawn with probability proportional to ``weights`` among the bin's
        states (uniformly when they are all zero), then a point inside it."""
        cell: np.ndarray = np.zeros(len(codes), dtype="int64")
        for b in np.unique(codes):
            rows = np.flatnonzero(codes == b)
            states = np.flatnonzero(self.coarse == b)
            w = np.clip(weights[states], 0, None)
            p = w / w.sum() if w.sum() > 0 else None
            cell[rows] = rng.choice(states, size=len(rows), p=p)
        if self.values is not None:
            return self.values[cell].astype("float64")
        assert self.edges is not None  # a grid has values or edges (Codec.fine_grids)
        lo, hi = self.edges[cell], self.edges[cell + 1]
        return _inverse(self.block.column, lo + rng.random(len(cell)) * (hi - lo))


class TableEncoder:
    """Maps frames with the schema's dtypes to integer codes and back.

    Args:
        schema: the declared schema.
        max_bins: the most bins a numeric or temporal column gets (a column's own ``bins``
            in the schema overrides it).
    """

    def __init__(self, schema: Schema, max_bins: int = DEFAULT_MAX_BINS):
        self.schema = schema
        self.max_bins = max_bins
        self.blocks = tuple(_block(c, max_bins) for c in schema.columns)

    @property
    def sizes(self) -> list[int]:
        return [b.size for b in self.blocks]

    @property
    def width(self) -> int:
        """Width of the one-hot encoding."""
        return sum(self.sizes)

    def encode(self, frame: pd.DataFrame | CodedTable) -> np.ndarray:
        """Codes of shape (rows, columns), int64, each in [0, block size); a CodedTable's
        own codes (in their compact dtype) when they were made with this encoder's sizes.

        Raises:
            ValueError: a CodedTable encoded with other block sizes (other ``max_bins``).
        """
        if isinstance(frame, CodedTable):
            if list(frame.sizes) != self.sizes:
                raise ValueError(f"codes of block sizes {list(frame.sizes)} given to an "
                                 f"encoder of sizes {self.sizes}: encode with the "
                                 "synthesizer's max_bins")
            return frame.codes
        return np.stack([_encode(b, frame[b.column.name]) for b in self.blocks], axis=1)

    def encode_column(self, index: int, values: pd.Series) -> np.ndarray:
        """Codes of one column's values; a missing value of a column that is not nullable
        is -1 (unknown)."""
        block = self.blocks[index]
        missing = values.isna().to_numpy()
        if block.column.nullable or not missing.any():
            return _encode(block, values)
        codes: np.ndarray = np.full(len(values), -1, dtype="int64")
        codes[~missing] = _encode(block, values[~missing])
        return codes

    def decode(self, codes: np.ndarray, rng: np.random.Generator,
               fine: dict[int, tuple[FineGrid, np.ndarray]] | None = None) -> pd.DataFrame:
        """Frame with the schema's dtypes from codes (rows, columns); values inside a bin
        are drawn uniformly (in the transformed space) with ``rng``, or, for a column given
        in ``fine`` as (grid, weights per fine state), from the fine states' weights."""
        fine = fine or {}
        return pd.DataFrame({b.column.name: _decode(b, codes[:, i], rng, fine.get(i))
                             for i, b in enumerate(self.blocks)})

    def fine_grids(self, per_bin: int = 10, max_values: int = 2000) -> dict[int, FineGrid]:
        """A FineGrid for every column whose bins hold more than one value, by index."""
        grids = {}
        for i, block in enumerate(self.blocks):
            if block.edges is None or block.integer_values:
                continue
            col = block.column
            low, high = (float(v) for v in _to_number(col, [col.minimum, col.maximum]))
            if col.kind != "float" and high - low + 1 <= max_values:
                values = np.arange(low, high + 1)
                coarse = np.searchsorted(block.edges, _forward(col, values), side="right") - 1
                grids[i] = FineGrid(block, np.clip(coarse, 0, block.n_values - 1), values, None)
            else:
                edges = np.linspace(block.edges[0], block.edges[-1], block.n_values * per_bin + 1)
                grids[i] = FineGrid(block, np.arange(block.n_values * per_bin) // per_bin,
                                    None, edges)
        return grids


def _to_number(col: Column, values):
    """Numeric view of a column's values: days (date) or seconds (datetime) for temporal."""
    if col.kind == "date":
        return pd.to_datetime(pd.Series(values)).to_numpy("datetime64[D]").astype("int64")
    if col.kind == "datetime":
        return pd.to_datetime(pd.Series(values)).to_numpy("datetime64[s]").astype("int64")
    return np.asarray(values, dtype="float64")


def _forward(col: Column, x: np.ndarray) -> np.ndarray:
    return np.log1p(x) if col.transform == "log" else x


def _inverse(col: Column, y: np.ndarray) -> np.ndarray:
    return np.expm1(y) if col.transform == "log" else y


def _block(col: Column, max_bins: int) -> Block:
    extra = int(col.nullable)
    if col.kind == "categorical":
        return Block(col, None, False, len(col.categories) + extra)
    if col.kind == "boolean":
        return Block(col, None, False, 2 + extra)
    low, high = (float(v) for v in _to_number(col, [col.minimum, col.maximum]))
    bins = col.bins or max_bins
    whole = col.kind != "float"  # integers, days and seconds are whole numbers
    if whole and high - low + 1 <= bins:
        edges = np.arange(low, high + 2) - 0.5  # one bin per integer value
        return Block(col, edges, True, len(edges) - 1 + extra)
    lo, hi = _forward(col, np.array([low, high]))
    edges = np.linspace(lo, hi, bins + 1)
    return Block(col, edges, False, bins + extra)


def _encode(block: Block, values: pd.Series) -> np.ndarray:
    col = block.column
    missing = values.isna().to_numpy()
    if missing.any() and not col.nullable:
        raise ValueError(f"column '{col.name}' has missing values but is not nullable")
    if col.kind == "categorical":
        codes = pd.Categorical(values, categories=col.categories).codes.astype("int64")
    elif col.kind == "boolean":
        codes = values.fillna(False).astype(bool).to_numpy().astype("int64")
    else:
        assert block.edges is not None  # numeric and temporal blocks are binned (_block)
        x = _to_number(col, values.astype("float64") if col.is_numeric else values)
        x = np.where(missing, block.edges[0] + 0.5, x).astype("float64")
        y = x if block.integer_values else _forward(col, x)
        codes = np.searchsorted(block.edges, y, side="right") - 1
        codes = np.clip(codes, 0, block.n_values - 1)
    return np.where(missing, block.n_values, codes) if col.nullable else codes


def _decode(block: Block, codes: np.ndarray, rng: np.random.Generator,
            fine: tuple[FineGrid, np.ndarray] | None = None) -> pd.Series:
    col = block.column
    missing = codes >= block.n_values
    safe = np.where(missing, 0, codes)
    if col.kind == "categorical":
        out = pd.Series(pd.Categorical.from_codes(np.where(missing, -1, codes),
                                                  categories=col.categories))
    elif col.kind == "boolean":
        out = pd.Series(safe.astype(bool), dtype="boolean").mask(missing)
    else:
        assert block.edges is not None  # numeric and temporal blocks are binned (_block)
        if block.integer_values:
            x = (block.edges[safe] + 0.5)
        elif fine is not None:
            x = fine[0].place(safe, fine[1], rng)
        else:
            lo, hi = block.edges[safe], block.edges[safe + 1]
            x = _inverse(col, lo + rng.random(len(codes)) * (hi - lo))
        low, high = (float(v) for v in _to_number(col, [col.minimum, col.maximum]))
        x = np.clip(x, low, high)
        if col.kind == "float":
            out = pd.Series(x).mask(missing)
        elif col.kind == "integer":
            x = np.floor(x + 0.5)
            if not block.integer_values:  # keep the rounded value inside its bin when it can
                first = np.ceil(_inverse(col, block.edges[safe]))
                last = np.ceil(_inverse(col, block.edges[safe + 1])) - 1
                x = np.where(first <= last, np.clip(x, first, last), x)
            out = pd.Series(x).mask(missing)
        else:
            unit = "D" if col.kind == "date" else "s"
            stamps = np.floor(x + (0.5 if block.integer_values else 0)).astype("int64")
            out = pd.Series(stamps.astype(f"datetime64[{unit}]")).mask(missing)
    return out.astype(pandas_dtype(col))

