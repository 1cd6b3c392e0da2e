"""Anonymeter-style attacks on a synthetic table, and distances to the closest record.

Singling-out, linkability and inference risks after Giomi et al., "A Unified Framework for
Quantifying Privacy Risk in Synthetic Data" (PoPETs 2023): risk = (attack rate - control
rate) / (1 - control rate), with a 95% interval for the difference of the two rates
(Newcombe's hybrid score interval, from the two rates' Wilson intervals). Our own,
simplified implementation of the paper's method, not the ``anonymeter`` package (which pins
numpy < 1.27): univariate singling-out predicates, linkability by nearest neighbours over two
halves of the columns, inference of one secret column by nearest neighbour. Distances are
Gower-like over columns scaled by the schema's bounds. ``pipelines.leakage`` runs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

from schemas import Column

NA = "\x00NA"  # the one value every missing non-numeric cell normalises to
FAR = 10.0  # a missing numeric value, scaled: at least 1 (the cap) from any value in [0, 1]
Z95 = NormalDist().inv_cdf(0.975)  # 1.95996...
CHUNK = 4_000_000  # cells of one (queries, references) distance block

@dataclass(frozen=True)
class Risk:
    """One attack's risk, after Giomi et al. (2023).

    Attributes:
        risk: (attack rate - control rate) / (1 - control rate), clipped to [0, 1].
        ci: the 95% interval: Newcombe's hybrid score interval of attack rate - control
            rate (both rates' sampling errors, from their Wilson intervals) put through the
            same formula. The paper takes the control rate as exact, which is too narrow:
            with both rates drawn alike, its lower bound is above 0 about one time in 12
            instead of one in 40 (see tests/test_leakage.py).
        attack_rate, control_rate: success on training targets and on held-out targets.
        n_attacks: targets in each set.
    """

    risk: float
    ci: tuple[float, float]
    attack_rate: float
    control_rate: float
    n_attacks: int


def wilson(rate: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a success rate over n trials (95% by default)."""
    if n == 0:
        return (0.0, 1.0)
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n))
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def _risk(attack: int, control: int, n: int) -> Risk:
    a, c = int(attack) / max(n, 1), int(control) / max(n, 1)
    scale = lambda d: float(np.clip(d / (1 - c), 0, 1)) if c < 1 else 0.0
    (a_low, a_high), (c_low, c_high) = wilson(a, n), wilson(c, n)
    low = a - c - np.hypot(a - a_low, c_high - c)  # Newcombe (1998), method 10
    high = a - c + np.hypot(a_high - a, c - c_low)
    return Risk(risk=scale(a - c), ci=(scale(low), scale(high)), attack_rate=a,
                control_rate=c, n_attacks=n)


@dataclass(frozen=True)
class Encoded:
    """Frames as (rows, columns) float32 matrices for a Gower-like distance: numbers scaled
    to [0, 1] by the schema's bounds (log for log-transformed columns; the data's range where
    undeclared), categories as integer codes shared across frames."""

    frames: tuple[np.ndarray, ...]
    numeric: np.ndarray  # (columns,) bool

    @classmethod
    def build(cls, columns: Sequence[Column], frames: Sequence[pd.DataFrame]) -> Encoded:
        sizes = [len(f) for f in frames]
        blocks = []
        for col in columns:
            values = np.concatenate([f[col.name].to_numpy() for f in frames])
            if col.is_numeric or col.is_temporal:
                x = values.astype("float64")
                lo: float = np.nanmin(x, initial=np.inf)
                hi: float = np.nanmax(x, initial=-np.inf)
                if col.is_numeric and col.minimum is not None and col.maximum is not None:
                    lo, hi = float(col.minimum), float(col.maximum)
                if col.transform == "log":
                    x, lo, hi = (np.log1p(np.maximum(v, 0)) for v in (x, lo, hi))
                x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
                blocks.append(np.where(np.isnan(x), FAR, x))
            else:
                blocks.append(pd.factorize(values)[0].astype("float64"))
        matrix = np.stack(blocks, axis=1).astype("float32")  # (sum of rows, columns)
        return cls(tuple(np.split(matrix, np.cumsum(sizes)[:-1])),
                   np.array([c.is_numeric or c.is_temporal for c in columns]))

    def _blocks(self, query: np.ndarray, ref: np.ndarray, cols: Sequence[int]):
        """Yields (offset, (chunk, refs) summed per-column distances) over query chunks."""
        step = max(1, CHUNK // max(len(ref), 1))
        for i in range(0, len(query), step):
            q = query[i:i + step]
            d: np.ndarray = np.zeros((len(q), len(ref)), "float32")  # (queries, refs)
            for j in cols:
                diff = q[:, j, None] - ref[None, :, j]
                d += np.minimum(np.abs(diff), 1) if self.numeric[j] else (diff != 0)
            yield i, d

    def nearest(self, query: np.ndarray, ref: np.ndarray, cols: Sequence[int]
                ) -> tuple[np.ndarray, np.ndarray]:
        """Index and Gower distance (mean over ``cols``) of each query row's nearest ref row."""
        index: np.ndarray = np.empty(len(query), "int64")
        dist: np.ndarray = np.empty(len(query), "float32")
        for i, d in self._blocks(query, ref, cols):
            index[i:i + len(d)] = d.argmin(1)
            dist[i:i + len(d)] = d.min(1) / len(cols)
        return index, dist

    def linked(self, query: np.ndarray, ref: np.ndarray, half_a: Sequence[int],
               half_b: Sequence[int]) -> np.ndarray:
        """(queries,) bool: some ref row is nearest on ``half_a`` and on ``half_b`` at once
        (ties count: categorical halves tie often, and argmin would pick by row order)."""
        out: np.ndarray = np.empty(len(query), bool)
        for (i, da), (_, db) in zip(self._blocks(query, ref, half_a),
                                    self._blocks(query, ref, half_b)):
            both = (da == da.min(1, keepdims=True)) & (db == db.min(1, keepdims=True))
            out[i:i + len(da)] = both.any(1)
        return out


def singling_out(train: pd.DataFrame, control: pd.DataFrame, synthetic: pd.DataFrame,
                 columns: Sequence[Column], n_attacks: int, rng: np.random.Generator) -> Risk:
    """Univariate singling-out: predicates read off the synthetic data ("col == v" for a value
    unique there, "col <= min" and "col >= max" for numbers) succeed when exactly one target
    row satisfies them; the same predicates on the equal-sized control give the chance rate."""
    queries = []
    for col in columns:
        s = synthetic[col.name]
        counts = s[s != NA].dropna().value_counts()
        queries += [(col.name, "==", v) for v in counts.index[counts.to_numpy() == 1]]
        if (col.is_numeric or col.is_temporal) and s.notna().any():
            queries += [(col.name, "<=", s.min()), (col.name, ">=", s.max())]
    if not queries:
        return _risk(0, 0, 0)
    chosen = [queries[i] for i in rng.choice(len(queries), min(n_attacks, len(queries)),
                                             replace=False)]

    def successes(frame: pd.DataFrame) -> int:
        counts = {c.name: frame[c.name].value_counts() for c in columns}
        hits = 0
        for name, op, v in chosen:
            x = frame[name]
            n = (counts[name].get(v, 0) if op == "==" else
                 int((x <= v).sum()) if op == "<=" else int((x >= v).sum()))
            hits += n == 1
        return hits

    return _risk(successes(train), successes(control), len(chosen))


def linkability(enc: Encoded, targets: np.ndarray, n_columns: int) -> Risk:
    """The attacker knows one half of a target's columns from one source and the other half
    from another: the two are linked when one synthetic row is nearest to the target on both
    halves (Anonymeter with one neighbour, ties included)."""
    half_a, half_b = list(range(n_columns // 2)), list(range(n_columns // 2, n_columns))
    if not half_a:
        return _risk(0, 0, 0)
    train, control, syn = enc.frames
    hits = [int(enc.linked(f[targets], syn, half_a, half_b).sum()) for f in (train, control)]
    return _risk(hits[0], hits[1], len(targets))


def inference(enc: Encoded, targets: np.ndarray, secret: int, tolerance: float = 0.05
              ) -> Risk:
    """Guess each target's ``secret`` column from its nearest synthetic row on the other
    columns: right when equal (categories) or within ``tolerance`` of the scaled range."""
    train, control, syn = enc.frames
    others = [j for j in range(syn.shape[1]) if j != secret]
    if not others:
        return _risk(0, 0, 0)
    hits = []
    for f in (train, control):
        guess = syn[enc.nearest(f[targets], syn, others)[0], secret]
        diff = np.abs(guess - f[targets, secret])
        hits.append(int((diff <= tolerance if enc.numeric[secret] else diff == 0).sum()))
    return _risk(hits[0], hits[1], len(targets))


def dcr_share(enc: Encoded, rows: np.ndarray) -> tuple[float, int, float, float]:
    """Share of the given synthetic rows closer to training than to held-out rows (ties count
    half), how many rows, and the two median distances to the closest record."""
    train, control, syn = enc.frames
    cols = list(range(syn.shape[1]))
    d_train = enc.nearest(syn[rows], train, cols)[1]
    d_hold = enc.nearest(syn[rows], control, cols)[1]
    share = float(np.mean(d_train < d_hold) + 0.5 * np.mean(d_train == d_hold))
    return share, len(rows), float(np.median(d_train)), float(np.median(d_hold))
