"""Survival outcomes: consistency of synthetic rows, and fidelity metrics.

``constrain`` is post-processing of the synthetic rows (no private data, no privacy cost)
that makes them obey the schema's ``survival:`` declaration:

- the time lies in [0, follow_up]; a synthetic time beyond the end of follow-up becomes
  follow_up and its row is censored (an event after follow-up cannot have been observed, so
  the record is "alive at last contact" there);
- columns declared ``only_with_event`` (cause of death) are missing where no event happened.

The metrics compare real and synthetic survival: Kaplan-Meier curves (product-limit
estimator, exact ties) and their largest vertical gap, the event label at a horizon for a
train-synthetic-test-real check, and Harrell's concordance index of a risk score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from schemas import Schema


def event_indicator(frame: pd.DataFrame, schema: Schema) -> np.ndarray:
    """Boolean (rows,) array: the event happened (missing counts as censored)."""
    surv = schema.survival
    assert surv is not None, "event_indicator needs a schema with survival"
    values = frame[surv.event]
    if surv.event_value is None:
        return values.fillna(False).astype(bool).to_numpy()
    return (values.astype("object") == surv.event_value).fillna(False).to_numpy(bool)


def constrain(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Synthetic rows made consistent with ``schema.survival`` (a copy; see module doc)."""
    surv = schema.survival
    if surv is None:
        return frame
    out = frame.copy()
    time = out[surv.time]
    late = (time > surv.follow_up).fillna(False).to_numpy(bool)
    early = (time < 0).fillna(False).to_numpy(bool)
    out.loc[late, surv.time] = surv.follow_up
    out.loc[early, surv.time] = 0
    event_col = schema.column(surv.event)
    if late.any():
        if event_col.kind == "boolean":
            out.loc[late, surv.event] = False
        else:
            censored = [c for c in event_col.categories if c != surv.event_value]
            out.loc[late, surv.event] = censored[0]
    no_event = ~event_indicator(out, schema)
    for name in surv.only_with_event:
        out.loc[no_event, name] = None
    return out.astype(frame.dtypes.to_dict())


@dataclass(frozen=True)
class KaplanMeier:
    """A Kaplan-Meier survival curve: S(t) = survival[i] for times[i] <= t < times[i+1].

    Attributes:
        times: the distinct event times, ascending, with 0 prepended.
        survival: S at each of those times (1.0 at 0 unless events happen at 0).
    """

    times: np.ndarray
    survival: np.ndarray

    def __call__(self, t: np.ndarray) -> np.ndarray:
        """S(t) at each of ``t`` (right-continuous step function)."""
        index = np.searchsorted(self.times, np.asarray(t, dtype=float), side="right") - 1
        return np.where(index >= 0, self.survival[np.maximum(index, 0)], 1.0)


def kaplan_meier(time: np.ndarray, event: np.ndarray) -> KaplanMeier:
    """Product-limit estimate from times and event indicators (True: event, else censored)."""
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    distinct = np.unique(time[event])
    at_risk = len(time) - np.searchsorted(np.sort(time), distinct, side="left")
    deaths = np.bincount(np.searchsorted(distinct, time[event]), minlength=len(distinct))
    surv = np.cumprod(1.0 - deaths / np.maximum(at_risk, 1))
    return KaplanMeier(np.concatenate([[0.0], distinct]), np.concatenate([[1.0], surv])
                       if not len(distinct) or distinct[0] > 0 else
                       np.concatenate([[surv[0]], surv]))


def max_gap(a: KaplanMeier, b: KaplanMeier, until: float | None = None) -> float:
    """The largest vertical distance between two survival curves (a Kolmogorov-type sup)
    over [0, until] (default: everywhere): both are step functions, so checking every jump
    point of either is exact."""
    grid = np.union1d(a.times, b.times)
    if until is not None:
        grid = grid[grid <= until]
    return float(np.max(np.abs(a(grid) - b(grid))))


def at_risk_time(time: np.ndarray, share: float = 0.1) -> float:
    """The time by which all but ``share`` of the rows have left the risk set: where a
    Kaplan-Meier curve still rests on that share of the rows (its tail beyond rests on a
    handful, and a single event there moves it by a large step)."""
    return float(np.quantile(np.asarray(time, dtype=float), 1 - share))


def horizon_label(time: np.ndarray, event: np.ndarray, horizon: float) -> np.ndarray:
    """Event by ``horizon``: 1 (event at or before it), 0 (known to survive past it), or -1
    (censored before it: unknown, leave the row out)."""
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    return np.where(event & (time <= horizon), 1, np.where(time > horizon, 0, -1))


def concordance(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C: among comparable pairs (the shorter time has an event), the share where
    the shorter time has the higher risk (ties in risk count one half). O(n^2 / chunk)."""
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    risk = np.asarray(risk, dtype=float)
    agree = total = 0.0
    for i in np.flatnonzero(event):
        later = time > time[i]
        total += later.sum()
        agree += (risk[i] > risk[later]).sum() + 0.5 * (risk[i] == risk[later]).sum()
    return agree / total if total else float("nan")
