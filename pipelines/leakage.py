"""Release leakage checks: exact copies, identifier values, Anonymeter-style risks and DCR.

Computed on every run from the training rows, held-out real rows (the control: rows the
synthesizer never saw, so what it reproduces of them is what to expect by chance), the
synthetic rows and the schema; all frames in the schema's dtypes (``schemas.pandas_dtype``).

* Exact copies: a hash join on normalised rows (floats rounded, NA made one value).
* Identifier values: values of the input's identifier columns that appear in any output cell
  (as normalised text, so a numeric identifier that equals a value of a numeric column is
  counted too: conservative).
* Singling-out, linkability and inference risks after Giomi et al., "A Unified Framework for
  Quantifying Privacy Risk in Synthetic Data" (PoPETs 2023): risk = (attack rate - control rate)
  / (1 - control rate), with a 95% interval that counts the sampling error of both rates
  (Newcombe's hybrid score interval; the paper's, which takes the control rate as exact, puts a
  risk's lower bound above 0 about 1 time in 12 when nothing leaks). Our own, simplified
  implementation of the paper's method, not the ``anonymeter`` package (which pins numpy <
  1.27): univariate singling-out predicates, linkability by nearest neighbours over two halves
  of the columns, inference of one secret column by nearest neighbour. The attacks live in
  ``pipelines.attacks``.
  Univariate singling-out is high whenever the output repeats raw values of a high-precision
  column (a unique income to the cent singles its owner out): a real finding, not noise.
* Distance to closest record (DCR): share of synthetic rows closer to a training row than to
  a held-out row, on equal-sized subsamples (0.5 is the ideal). With n_ref of the n_train
  training rows compared, even a pure copier only reaches about 0.5 + 0.5 n_ref / n_train.

The attacks and DCR use a Gower-like distance: numbers scaled to [0, 1] by the schema's
bounds with differences capped at 1, categories 0 if equal and 1 if not, missing equal to
missing only; the mean over columns. Numpy, in blocks, no index: about 10 s on Adult (32k
training, 16k held-out, 10k synthetic rows, 5,000 attacks) on two cores.

These are smoke alarms, not proof of privacy (see ``NOTE``). They read the real rows, so
their values are themselves disclosures: keep the report in the trusted zone.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipelines.attacks import (
    NA,
    Encoded,
    Risk,
    dcr_share,
    inference,
    linkability,
    singling_out,
    wilson,
)
from schemas import Column, Schema

NOTE = ("Similarity metrics are smoke alarms, not proof of privacy: a release that passes "
        "them is not private for that (only its DP guarantee says so), and one that fails "
        "them must be looked at before it goes out. They are computed on the real rows, so "
        "they are disclosures themselves: keep them in the trusted zone and release no more "
        "than pass or fail (Ganev and De Cristofaro 2023, arXiv 2312.05114).")


@dataclass(frozen=True)
class Thresholds:
    """When a number becomes a warning.

    Attributes:
        unique_copies: most synthetic copies of rows unique in the training data.
        copy_excess: most excess of the share of training rows reproduced over the share of
            held-out rows reproduced (the chance rate).
        identifier_values: most identifier values of the input seen in the output.
        risk_upper: most upper 95% bound of each Anonymeter-style risk.
        risk_significant: warn about a risk only when its lower bound is above 0 too. With
            a frequent secret (Adult's income: control rate 0.65) the risk's interval is
            +-0.037 wide even at 5,000 attacks, so the upper bound alone crossed 0.05 on an
            honest epsilon = 1 release (dp-independent: risk 0.017, interval 0 to 0.054).
        dcr_share: most share of synthetic rows closer to training than held-out rows.
    """

    unique_copies: int = 0
    copy_excess: float = 0.01
    identifier_values: int = 0
    risk_upper: float = 0.05
    risk_significant: bool = True
    dcr_share: float = 0.6


def normalise(frame: pd.DataFrame, columns: Sequence[Column], decimals: int) -> pd.DataFrame:
    """Comparable values: numbers (and dates, as seconds) as float64 rounded to ``decimals``
    with one NaN and no -0.0; everything else as text, missing as ``NA``."""
    out = {}
    for col in columns:
        s = frame[col.name]
        if col.is_numeric or col.is_temporal:
            if col.is_temporal:
                s = pd.to_datetime(s)
                x = np.where(s.isna(), np.nan, s.to_numpy("datetime64[ns]").astype("int64") / 1e9)
            else:
                x = pd.to_numeric(s).astype("float64").to_numpy(na_value=np.nan)
            out[col.name] = np.where(np.isnan(x), np.nan, np.round(x, decimals) + 0.0)
        else:
            out[col.name] = s.astype(object).where(s.notna(), NA).astype(str).to_numpy()
    return pd.DataFrame(out, index=frame.index)


def tokens(series: pd.Series, decimals: int = 6) -> set[str]:
    """Distinct non-missing values as text; integral numbers without a decimal point."""
    s = series.dropna()
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        x = np.round(s.to_numpy("float64"), decimals)
        return {str(int(v)) if v.is_integer() else repr(float(v)) for v in x}
    return {str(v).strip() for v in s}


@dataclass(frozen=True)
class LeakageReport:
    """The release checks of one run. Smoke alarms, not proof of privacy (``note``).

    Attributes:
        n_train, n_holdout, n_synthetic: rows compared.
        exact_copies: synthetic rows equal to some training row (normalised).
        unique_copies: synthetic rows equal to a row that occurs once in the training data.
        train_reproduced, holdout_reproduced: shares of training and of held-out rows that
            appear verbatim in the synthetic data; the second is the rate expected by chance.
        unique_train_reproduced, unique_holdout_reproduced: the same for rows unique in
            their own split.
        identifier_values: identifier values of the input that appear in an output cell.
        identifier_hits: (column, count) for each identifier column checked.
        singling_out, linkability, inference: Anonymeter-style risks with 95% intervals.
        inference_secret: the column the inference attack guessed.
        dcr_share, dcr_ci: share of synthetic rows closer to training than to held-out rows
            (ties count half; 0.5 is ideal) and its 95% Wilson interval.
        dcr_train_median, dcr_holdout_median: median Gower distances to the closest record.
        warnings: each threshold crossed, in words.
        note: why none of this proves privacy.
        seconds: wall time of the checks.
    """

    n_train: int
    n_holdout: int
    n_synthetic: int
    exact_copies: int
    unique_copies: int
    train_reproduced: float
    holdout_reproduced: float
    unique_train_reproduced: float
    unique_holdout_reproduced: float
    identifier_values: int
    identifier_hits: tuple[tuple[str, int], ...]
    singling_out: Risk
    linkability: Risk
    inference: Risk
    inference_secret: str
    dcr_share: float
    dcr_ci: tuple[float, float]
    dcr_train_median: float
    dcr_holdout_median: float
    warnings: tuple[str, ...]
    note: str = NOTE
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """Plain JSON-ready values (tuples become lists)."""
        return asdict(self)


def _row_hashes(frame: pd.DataFrame) -> np.ndarray:
    return pd.util.hash_pandas_object(frame, index=False).to_numpy()


def copy_counts(train: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame
                ) -> dict[str, float]:
    """Exact copies by hash join of normalised frames (same columns, ``normalise``d)."""
    h_train, h_hold, h_syn = (_row_hashes(f) for f in (train, holdout, synthetic))
    train_counts = pd.Series(h_train).value_counts()
    hold_counts = pd.Series(h_hold).value_counts()
    unique_train = train_counts.index[train_counts.to_numpy() == 1].to_numpy()
    unique_hold = hold_counts.index[hold_counts.to_numpy() == 1].to_numpy()
    in_syn = lambda h: np.isin(h, h_syn)
    share = lambda x: float(x.mean()) if len(x) else 0.0
    return {"exact_copies": int(np.isin(h_syn, h_train).sum()),
            "unique_copies": int(np.isin(h_syn, unique_train).sum()),
            "train_reproduced": share(in_syn(h_train)),
            "holdout_reproduced": share(in_syn(h_hold)),
            "unique_train_reproduced": share(in_syn(unique_train)),
            "unique_holdout_reproduced": share(in_syn(unique_hold))}


def identifier_leaks(raw: pd.DataFrame, identifiers: Sequence[str], synthetic: pd.DataFrame,
                     decimals: int = 6) -> dict[str, int]:
    """For each identifier column of the input, how many of its distinct values appear as a
    whole cell anywhere in the output (compared as normalised text: 12345 matches "12345")."""
    missing = [c for c in identifiers if c not in raw.columns]
    if missing:
        raise KeyError(f"identifier columns {missing} are not in the input frame: pass the raw "
                       f"input that still holds them")
    seen: set[str] = set()
    for name in synthetic.columns:
        seen |= tokens(synthetic[name], decimals)
    return {c: len(tokens(raw[c], decimals) & seen) for c in identifiers}


def check_leakage(train: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame,
                  schema: Schema, *, identifiers: Sequence[str] = (),
                  raw: pd.DataFrame | None = None, secret: str | None = None,
                  n_attacks: int = 5000, reference_rows: int = 20_000, dcr_rows: int = 2000,
                  decimals: int = 6, thresholds: Thresholds = Thresholds(),
                  seed: int = 0) -> LeakageReport:
    """Runs every release check; a fixed seed gives the same report on the same data.

    Args:
        train, holdout, synthetic: training rows, held-out real rows, synthetic rows, in the
            schema's dtypes; only the schema's columns present in all three are compared.
        schema: declares each column's kind, bounds and categories (distance scaling).
        identifiers: identifier columns of ``raw`` whose values must never be output.
        raw: the input frame holding the identifier columns (default: ``train``).
        secret: column the inference attack guesses (default: the schema's target, else the
            last column).
        n_attacks: targets per attack, from training and (as control) held-out rows.
        reference_rows: size of the equal-sized training and held-out subsamples that the
            attacks and DCR compare (min of this and both splits' sizes).
        dcr_rows: synthetic rows subsampled for DCR.
        decimals: floats are rounded to this many decimals before comparing.
        thresholds: when to warn.
        seed: the subsampling seed.

    Returns:
        A ``LeakageReport``; its ``warnings`` are empty when no threshold was crossed.
    """
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    columns = [c for c in schema.columns if c.name not in set(identifiers)
               and all(c.name in f.columns for f in (train, holdout, synthetic))]
    if not columns:
        raise ValueError("train, holdout and synthetic share no column of the schema")
    if not (len(train) and len(holdout) and len(synthetic)):
        raise ValueError(f"leakage checks need rows in each frame; got {len(train)} training, "
                         f"{len(holdout)} held-out and {len(synthetic)} synthetic rows")
    frames = [normalise(f, columns, decimals) for f in (train, holdout, synthetic)]
    copies = copy_counts(*frames)
    hits = identifier_leaks(train if raw is None else raw, identifiers, synthetic, decimals)

    n_ref = min(reference_rows, len(train), len(holdout))
    pick = lambda n, k: np.sort(rng.choice(n, size=min(k, n), replace=False))
    t_ref, h_ref = (f.iloc[pick(len(f), n_ref)].reset_index(drop=True) for f in frames[:2])
    syn = frames[2].reset_index(drop=True)
    tables = Encoded.build(columns, [t_ref, h_ref, syn])
    names = [c.name for c in columns]
    target = schema.target if getattr(schema, "target", None) in names else names[-1]
    secret = secret or target
    if secret not in names:
        raise ValueError(f"secret column {secret!r} is not among the compared columns "
                         f"{names}")
    n_att = min(n_attacks, n_ref)
    targets = pick(n_ref, n_att)
    so = singling_out(t_ref, h_ref, syn, columns, n_att, rng)
    link = linkability(tables, targets, len(columns))
    inf = inference(tables, targets, names.index(secret))
    sub = pick(len(syn), dcr_rows)
    share, n_dcr, med_t, med_h = dcr_share(tables, sub)
    report: dict[str, Any] = dict(
        copies, n_train=len(train), n_holdout=len(holdout), n_synthetic=len(synthetic),
        identifier_values=sum(hits.values()), identifier_hits=tuple(hits.items()),
        singling_out=so, linkability=link, inference=inf, inference_secret=secret,
        dcr_share=share, dcr_ci=wilson(share, n_dcr), dcr_train_median=med_t,
        dcr_holdout_median=med_h)
    return LeakageReport(**report, warnings=_warnings(report, thresholds),
                         seconds=time.perf_counter() - start)


def _warnings(r: dict, t: Thresholds) -> tuple[str, ...]:
    out = []
    if r["unique_copies"] > t.unique_copies:
        out.append(f"{r['unique_copies']} synthetic rows copy a row unique in the training "
                   f"data (held-out unique rows reproduced by chance: "
                   f"{r['unique_holdout_reproduced']:.2%})")
    excess = r["train_reproduced"] - r["holdout_reproduced"]
    if excess > t.copy_excess:
        out.append(f"{r['train_reproduced']:.2%} of training rows appear verbatim in the "
                   f"synthetic data against {r['holdout_reproduced']:.2%} of held-out rows")
    if r["identifier_values"] > t.identifier_values:
        cols = ", ".join(f"{c} ({n})" for c, n in r["identifier_hits"] if n)
        out.append(f"{r['identifier_values']} identifier values of the input appear in the "
                   f"output: {cols}")
    for name in ("singling_out", "linkability", "inference"):
        risk = r[name]
        if risk.ci[1] > t.risk_upper and (risk.ci[0] > 0 or not t.risk_significant):
            out.append(f"{name.replace('_', '-')} risk {risk.risk:.3f} (95% CI "
                       f"{risk.ci[0]:.3f} to {risk.ci[1]:.3f}) has its upper bound above "
                       f"{t.risk_upper}" + (" and its lower bound above 0"
                                            if t.risk_significant else ""))
    if r["dcr_share"] > t.dcr_share:
        out.append(f"{r['dcr_share']:.1%} of synthetic rows are closer to a training row than "
                   f"to a held-out row (above {t.dcr_share:.0%}; 50% is ideal)")
    return tuple(out)
