"""What a run tells its operator while it works: one log line per phase and, during
training, a line every tenth of the way (or every ``EVERY_S`` seconds) with a steady ETA.

Everything goes through the ``synth.progress`` logger, the run's *public* channel: the
Prefect flows forward it to the flow run's logs (Prefect's database), ``synth run`` prints
it on stderr, and on a terminal it drives a progress bar (``terminal``). So a message on it
may hold only what the release may show: the run's settings, the phase, the steps of DP
training (their number comes from a DP count), the release gate's results. Never a count,
statistic or value of the private rows: those go to ``synth.local`` (this process's
terminal) or the internal report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

PROGRESS = "synth.progress"
log = logging.getLogger(PROGRESS)
log.setLevel(logging.INFO)  # the phases show whatever the root logger's level
EVERY_S = 30.0  # at most this long between two training lines

Callback = Callable[[int, int], None]  # (done, total): what synthesizers call per step


def phase(name: str, message: str, *args: object, level: int = logging.INFO) -> None:
    """One line: ``<phase>: <message>`` (public: see the module's docstring)."""
    log.log(level, f"{name}: {message}", *args, extra={"synth_phase": name})


def budget_line(ledger, data_set: str, total: tuple[float, float] | None) -> str:
    """What the data set has spent in ``ledger`` (this run's reservation included) and, when
    its schema declares a total, what remains."""
    spent = ledger.spent(data_set)
    line = f"data set '{data_set}' has spent epsilon {spent.epsilon:.4g}"
    if total is not None:
        line += (f" of its {total[0]:g} ({max(0.0, total[0] - spent.epsilon):.4g} left), "
                 f"delta {spent.delta:.3g} of {total[1]:g}")
    return line


def announce(plan: Any, synthesizer: str, unit: str = "rows") -> None:
    """The run's first progress line: what it reserved, for which synthesizer, how many
    ``unit`` go where, and what its data set has spent (a table's or an image plan)."""
    cfg = plan.config
    phase("prepare", "%s reserved epsilon=%g, delta=%g for %s, %s %s to %s; %s",
          "resumed: the killed run's entry" if plan.resumed else "budget checked and",
          cfg.epsilon, cfg.delta, synthesizer, f"{cfg.rows:,}", unit, plan.out,
          budget_line(plan.ledger, plan.schema.name, plan.schema.budget))


def duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else \
        f"{rest // 60}:{rest % 60:02d}"


class Steps:
    """A synthesizer's ``progress(done, total)`` callback that logs training.

    ``unit`` says what ``done`` and ``total`` count: ``"step"`` (DP-SGD steps: "step 120 of
    1,200") or ``"permille"`` (dp-marginals reports the share of its budget measured). A line
    is logged at each tenth of the way and at least every ``every_s`` seconds; the ETA is the
    average time per unit so far times what is left (steady: no window of the last steps).
    ``also`` (a terminal's progress bar) is called on every step."""

    def __init__(self, name: str, unit: str = "step", also: Callback | None = None,
                 every_s: float = EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.name, self.unit, self.also, self.every_s, self.clock = name, unit, also, \
            every_s, clock
        self.start: float | None = None
        self.first = 0  # units done at the first call (a resumed run's, or a first chunk)
        self.last_tenth = -1
        self.last_line = 0.0

    def __call__(self, done: int, total: int) -> None:
        if self.also is not None:
            self.also(done, total)
        now = self.clock()
        if self.start is None:
            self.start, self.first = now, done  # the time per unit counts from here
            self.last_line = now
        tenth = 10 * done // total if total else 0
        if tenth == self.last_tenth and now - self.last_line < self.every_s and done < total:
            return
        self.last_tenth, self.last_line = tenth, now
        log.info(self.line(done, total, now), extra={"synth_phase": self.name,
                                                     "synth_step": (done, total)})

    def line(self, done: int, total: int, now: float) -> str:
        elapsed = now - (self.start or now)
        ran = done - self.first
        eta = (f", about {duration(elapsed / ran * (total - done))} left" if ran > 0
               and done < total else "")
        if self.unit == "permille":
            where = f"{done / 10:.0f}% of the privacy budget measured"
        else:
            where = f"DP-SGD step {done:,} of {total:,} ({100 * done / total:.0f}%)"
        return f"{self.name}: {where}, {duration(elapsed)} elapsed{eta}"


@contextmanager
def terminal(enabled: bool) -> Iterator[Callback | None]:
    """A rich progress bar on stderr while the block runs (when ``enabled``: a terminal):
    the phase lines print above it, the training steps move it. Yields the step callback
    to hand to the run (``Steps`` calls it on every step), or None when not enabled."""
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("{task.fields[eta]}"), transient=True)
    task = bar.add_task("preparing", total=None, eta="")
    started: list[float] = []

    def update(done: int, total: int) -> None:
        now = time.monotonic()
        if not started:
            started.extend((now, done))
        ran = done - started[1]
        eta = (f"about {duration((now - started[0]) / ran * (total - done))} left"
               if ran > 0 and done < total else "")
        bar.update(task, completed=done, total=total, eta=eta)

    class Lines(logging.Handler):
        """Phase lines above the bar; the bar's label follows the phase."""

        def emit(self, record: logging.LogRecord) -> None:
            name = getattr(record, "synth_phase", None)
            if getattr(record, "synth_step", None) is not None:
                return  # the bar shows it
            if name:
                bar.update(task, description=name)
            bar.console.print(self.format(record), markup=False, highlight=False)

    handler = Lines()
    handler.setFormatter(logging.Formatter("%(message)s"))
    propagate = log.propagate
    log.addHandler(handler)
    log.propagate = False  # the handler prints them: not twice
    try:
        with bar:
            yield update
    finally:
        log.removeHandler(handler)
        log.propagate = propagate
