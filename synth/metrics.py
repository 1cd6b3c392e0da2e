"""Fidelity metrics: how close a synthetic table is to the real one.

Plain functions of two frames in the schema's pandas dtypes (``schemas.pandas_dtype``), used
by the release's fidelity suite (pipelines.validate) and by the benchmarks. Each is a fixed
function of its inputs: classifiers and subsamples use fixed seeds. They read real rows, so
their values are disclosures: they belong in internal reports, never in a release.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

PROPENSITY_ROWS = 10_000  # per side: enough for a stable pMSE, a few seconds on 2 cores


def _numbers(values: pd.Series) -> np.ndarray:
    """Non-missing values as float64 (datetimes as nanoseconds)."""
    values = values.dropna()
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.astype("int64").to_numpy(dtype="float64")
    return values.to_numpy(dtype="float64")


def ks_distance(real: pd.Series, synthetic: pd.Series) -> float:
    """Two-sample Kolmogorov-Smirnov statistic over the non-missing values (0 = same
    distribution, 1 = disjoint); 1 when either side has no values."""
    a, b = np.sort(_numbers(real)), np.sort(_numbers(synthetic))
    if len(a) == 0 or len(b) == 0:
        return 1.0
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / len(a)
    cdf_b = np.searchsorted(b, grid, side="right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def tv_distance(real: pd.Series, synthetic: pd.Series) -> float:
    """Total variation distance between the value frequencies, missing values as one more
    value (0 = same frequencies, 1 = disjoint)."""
    p = real.astype("object").fillna("<NA>").value_counts(normalize=True)
    q = synthetic.astype("object").fillna("<NA>").value_counts(normalize=True)
    p, q = p.align(q, fill_value=0.0)
    return float(0.5 * np.abs(p - q).sum())


def marginal_distance(real_codes: np.ndarray, synth_codes: np.ndarray, sizes: list[int],
                      k: int, subsets: Sequence[tuple[int, ...]] | None = None) -> float:
    """Mean over all k-column subsets (or over ``subsets``) of the L1 distance between
    normalised histograms.

    Args:
        real_codes, synth_codes: (rows, columns) integer codes, e.g. ``TableEncoder.encode``.
        sizes: the number of codes of each column.
        k: the marginals' order (2: pairs, 3: triples).
        subsets: the column subsets to average over instead of all of order k.
    """
    out = []
    for cols in subsets or itertools.combinations(range(len(sizes)), k):
        dims = [sizes[c] for c in cols]
        r = np.bincount(np.ravel_multi_index(real_codes[:, cols].T, dims),
                        minlength=int(np.prod(dims))) / len(real_codes)
        s = np.bincount(np.ravel_multi_index(synth_codes[:, cols].T, dims),
                        minlength=int(np.prod(dims))) / len(synth_codes)
        out.append(np.abs(r - s).sum())
    return float(np.mean(out))


def association_matrix(codes: np.ndarray, sizes: list[int]) -> np.ndarray:
    """Cramer's V between every pair of binned columns: (columns, columns), ones on the
    diagonal. One measure for every pair of kinds, since numeric columns are binned."""
    k = len(sizes)
    out = np.eye(k)
    for i, j in itertools.combinations(range(k), 2):
        table = np.bincount(codes[:, i] * sizes[j] + codes[:, j],
                            minlength=sizes[i] * sizes[j]).reshape(sizes[i], sizes[j])
        table = table[table.sum(1) > 0][:, table.sum(0) > 0]  # empty bins carry no evidence
        if min(table.shape) < 2:
            continue  # a constant column is associated with nothing
        n = table.sum()
        expected = np.outer(table.sum(1), table.sum(0)) / n
        chi2 = float(((table - expected) ** 2 / expected).sum())
        out[i, j] = out[j, i] = np.sqrt(chi2 / (n * (min(table.shape) - 1)))
    return out


def association_difference(real_codes: np.ndarray, synth_codes: np.ndarray,
                           sizes: list[int]) -> dict[str, float]:
    """Mean and max absolute difference of the two Cramer's V matrices over column pairs."""
    diff = np.abs(association_matrix(real_codes, sizes) - association_matrix(synth_codes, sizes))
    upper = diff[np.triu_indices(len(sizes), 1)]
    if len(upper) == 0:
        return {"mean": 0.0, "max": 0.0}
    return {"mean": float(upper.mean()), "max": float(upper.max())}


def features(frame: pd.DataFrame) -> pd.DataFrame:
    """Nullable extension dtypes as float64 (NaN for missing) and datetimes as numbers for
    scikit-learn; categories stay categorical for HistGradientBoosting's native support."""
    out = frame.copy()
    for c in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[c]):
            days = out[c].astype("int64") / 86_400e9
            out[c] = days.where(out[c].notna())
        elif str(out[c].dtype) in ("Int64", "Float64", "boolean"):
            out[c] = out[c].astype("float64")
    return out


def _classifier():
    from sklearn.ensemble import HistGradientBoostingClassifier

    # At most 255 categories per feature for HistGradientBoosting's native support.
    return HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)


def _categories_fit(frame: pd.DataFrame) -> pd.DataFrame:
    """Categorical columns with more categories than HistGradientBoosting takes, as codes."""
    wide = [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)
            and len(frame[c].cat.categories) > 255]
    return frame.assign(**{c: frame[c].cat.codes.astype("float64")
                           .where(frame[c].notna()) for c in wide})


def propensity(real: pd.DataFrame, synthetic: pd.DataFrame, folds: int = 2,
               max_rows: int = PROPENSITY_ROWS) -> dict[str, float]:
    """Propensity mean squared error of a cross-fitted "is synthetic" classifier.

    Equal-size samples of both tables (at most ``max_rows`` each, drawn with a fixed
    generator); every row's propensity comes from a model that did not see it.

    Returns:
        ``pmse``: mean (p - 1/2)^2, 0 = indistinguishable, 0.25 = fully separable; and
        ``auroc``: that classifier's AUROC (0.5 = indistinguishable).
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    m = min(len(real), len(synthetic), max_rows)
    rng = np.random.default_rng(0)  # the metric is a fixed function of the two tables
    both = pd.concat([real.iloc[rng.choice(len(real), m, replace=False)],
                      synthetic.iloc[rng.choice(len(synthetic), m, replace=False)]],
                     ignore_index=True)
    y = np.r_[np.zeros(m), np.ones(m)]
    p = cross_val_predict(_classifier(), _categories_fit(features(both)), y,
                          method="predict_proba",
                          cv=StratifiedKFold(folds, shuffle=True, random_state=0))[:, 1]
    return {"pmse": float(np.mean((p - 0.5) ** 2)), "auroc": float(roc_auc_score(y, p))}


def tstr_score(synthetic: pd.DataFrame, real: pd.DataFrame, target: str) -> float:
    """Train on synthetic, test on real: a HistGradientBoosting model of ``target``.

    Returns:
        For a categorical or boolean target, the AUROC on the real rows (macro one-vs-rest
        over the classes present in both); for a numeric one, the R^2. A synthetic target
        with one class, or no real class to score, gives 0.5 (no signal).
    """
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.metrics import r2_score, roc_auc_score

    x_syn = _categories_fit(features(synthetic.drop(columns=[target])))
    x_real = _categories_fit(features(real.drop(columns=[target])))
    if pd.api.types.is_numeric_dtype(real[target]) and not pd.api.types.is_bool_dtype(
            real[target]) and str(real[target].dtype) != "boolean":
        keep_s, keep_r = synthetic[target].notna(), real[target].notna()
        model = HistGradientBoostingRegressor(categorical_features="from_dtype", random_state=0)
        model.fit(x_syn[keep_s.to_numpy()], synthetic[target][keep_s].astype("float64"))
        return float(r2_score(real[target][keep_r].astype("float64"),
                              model.predict(x_real[keep_r.to_numpy()])))
    y_syn = synthetic[target].astype("object").fillna("<NA>").astype(str).to_numpy()
    y_real = real[target].astype("object").fillna("<NA>").astype(str).to_numpy()
    classes = np.unique(y_syn)
    if len(classes) < 2:
        return 0.5
    model = _classifier().fit(x_syn, y_syn)
    proba = model.predict_proba(x_real)  # (rows, classes) in model.classes_ order
    scores = []
    for i, label in enumerate(model.classes_):
        truth = y_real == label
        if truth.any() and not truth.all():
            scores.append(roc_auc_score(truth, proba[:, i]))
        if len(model.classes_) == 2:
            break  # binary: one AUROC, the other class's is the same
    return float(np.mean(scores)) if scores else 0.5
