"""What ``synth budget`` prints: the ledger's entries and, per data set, its declared total,
what its runs spent and what is left.

Everything shown is what the ledger holds: the (epsilon, delta) of each run, its state, the
total its data set's schema declared (public) and whether its release was quarantined (the
release gate's decision, which rests on public inputs only). A quarantined run is listed as
``quarantined``, not as a committed release, and still counts: its budget was spent.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipelines.ledger import COUNTED


def shown_state(entry: dict) -> str:
    """The entry's state as listed: ``quarantined`` for a run whose release failed its gate
    (in the ledger it stays committed, or spending, and counts)."""
    return "quarantined" if entry.get("outcome") == "quarantined" else entry["state"]


def entry_lines(entries: list[dict]) -> list[str]:
    """The table of entries, one line each, under a header line."""
    lines = [(f"{'id':>4}  {'created':25}  {'data set':16}  {'state':11}  "
              f"{'epsilon':>8}  {'delta':>8}  synthesizer     release")]
    for e in entries:
        lines.append(f"{e['id']:>4}  {e['created']:25}  {e['data_set'][:16]:16}  "
                     f"{shown_state(e):11}  {e['epsilon']:>8.4g}  {e['delta']:>8.2g}  "
                     f"{e['synthesizer']:15} {e['release']}")
    return lines


def data_set_lines(entries: list[dict]) -> list[str]:
    """Per data set, in order of first appearance: what its counted runs spent, how many
    were committed releases and how many quarantined, the total its schema declared at its
    newest reservation and what is left of it."""
    lines = [("spent per data set (every state but cancelled counts, quarantined runs "
              "included: their budget was spent):")]
    for data_set in dict.fromkeys(e["data_set"] for e in entries):
        mine = [e for e in entries if e["data_set"] == data_set]
        rows = [e for e in mine if e["state"] in COUNTED]
        epsilon, delta = sum(e["epsilon"] for e in rows), sum(e["delta"] for e in rows)
        line = f"  {data_set}: epsilon {epsilon:.4g}, delta {delta:.3g} over {len(rows)} run(s)"
        line += f" ({_outcomes(rows)})" if rows else ""
        lines.append(line + "; " + _total(mine, epsilon, delta))
    return lines


def _outcomes(rows: Iterable[dict]) -> str:
    states = [shown_state(e) for e in rows]
    counts = {s: states.count(s) for s in ("committed", "quarantined", "spending", "reserved")}
    names = {"committed": "committed release(s)", "quarantined": "quarantined",
             "spending": "spending (running or killed)", "reserved": "reserved"}
    return ", ".join(f"{n} {names[s]}" for s, n in counts.items() if n)


def _total(entries: list[dict], epsilon: float, delta: float) -> str:
    """The declared total of the newest entry that was reserved against one, and what is left."""
    newest = max(entries, key=lambda e: e["id"])
    total = (newest.get("total_epsilon"), newest.get("total_delta"))
    if total[0] is None or total[1] is None:
        return ("no total declared (runs are recorded, not limited; a ledger from before "
                "totals were recorded shows none until the next run)")
    return (f"declared total epsilon {total[0]:g}, delta {total[1]:g}; remaining epsilon "
            f"{max(0.0, total[0] - epsilon):.4g}, delta {max(0.0, total[1] - delta):.3g}")
