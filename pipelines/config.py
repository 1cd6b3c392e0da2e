"""The configuration of one release run, shared by ``synth run`` and the Prefect flow.

A pydantic model, because Prefect renders it as the run form and config files load into it.
"""

from __future__ import annotations

import argparse
from typing import Literal, get_args

from pydantic import BaseModel, Field

from synth.privacy import DEFAULT_DELTA

DEFAULT_ROWS = 10_000
DEFAULT_SYNTHESIZER = "dp-marginals"
Synthesizers = Literal["dp-marginals", "dp-ctgan", "dp-vae", "dp-independent"]
TUNABLE = ("epochs", "batch_size", "max_grad_norm", "lr", "accountant")


class RunConfig(BaseModel):
    """One release: which private file, which schema, how much privacy, where to publish."""

    model_config = {"extra": "forbid"}

    input: str = Field(description="Private input table (CSV, optionally .gz, or Parquet)")
    schema_file: str = Field(description="Schema YAML declaring columns, bounds and categories")
    out: str = Field(description="Release directory to create (data.parquet + reports)")
    epsilon: float = Field(gt=0, description="Total privacy budget epsilon for this release")
    delta: float = Field(DEFAULT_DELTA, gt=0, lt=1, description="Privacy parameter delta")
    rows: int = Field(DEFAULT_ROWS, ge=1, description="Synthetic rows to publish (a fixed "
                      "number: the real row count is private and never used as a default)")
    synthesizer: Synthesizers = Field(DEFAULT_SYNTHESIZER, description="Synthesizer "
                                      "(dp-marginals: adaptive noisy marginals, the most "
                                      "faithful; dp-ctgan, dp-vae: DP-SGD trained networks; "
                                      "dp-independent: a baseline)")
    epochs: int | None = Field(None, ge=1, le=10_000, description="DP-SGD epochs (dp-vae, "
                               "dp-ctgan; empty: the synthesizer's default)")
    batch_size: int | None = Field(None, ge=1, description="Expected batch size of Poisson "
                                   "sampling (dp-vae, dp-ctgan)")
    max_grad_norm: float | None = Field(None, gt=0, description="Per-sample gradient "
                                        "clipping bound (dp-vae, dp-ctgan)")
    lr: float | None = Field(None, gt=0, description="Learning rate (dp-vae, dp-ctgan)")
    accountant: Literal["prv", "rdp"] | None = Field(None, description="Opacus privacy "
                                                      "accountant of DP-SGD (dp-vae, dp-ctgan; "
                                                      "default prv)")
    seed: int = Field(0, description="Seed for weight initialisation and sampling")
    noise_seed: int | None = Field(None, description="Seed of the private randomness (DP "
                                   "noise, Poisson sampling). Leave empty: a fresh seed from "
                                   "the operating system is drawn per run. A fixed one makes "
                                   "the run reproducible for tests and must never be published")
    secure_noise: bool = Field(False, description="Draw the DP-SGD noise from the operating "
                               "system's cryptographically secure generator (slower; "
                               "dp-marginals always uses OpenDP's secure samplers)")
    clip: bool = Field(False, description="Clip out-of-bounds values instead of rejecting")
    map_unknown: bool = Field(False, description="Map undeclared categories to the column's "
                              "declared catch_all instead of rejecting")
    overwrite: bool = Field(False, description="Replace an existing release at `out`")
    ledger: str | None = Field(None, description="Privacy budget ledger database (default: "
                               "$SYNTH_HOME/ledger.db, else ~/.dp-synth/ledger.db)")

    def synthesizer_params(self) -> dict:
        """The settings given for the chosen synthesizer; the rest keep its defaults.

        Raises:
            ValueError: a setting the chosen synthesizer does not have.
        """
        from synth.base import make_synthesizer

        accepted = make_synthesizer(self.synthesizer).get_params()
        given = {k: getattr(self, k) for k in TUNABLE if getattr(self, k) is not None}
        if self.secure_noise and "secure_noise" in accepted:
            given["secure_noise"] = True
        wrong = sorted(set(given) - set(accepted))
        if wrong:
            raise ValueError(f"{', '.join('--' + k.replace('_', '-') for k in wrong)} "
                             f"{'does' if len(wrong) == 1 else 'do'} not apply to synthesizer "
                             f"{self.synthesizer}")
        return {"seed": self.seed, "noise_seed": self.noise_seed, **given}


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line form of RunConfig (used by ``synth run`` and ``python -m flows.release``)."""
    fields = RunConfig.model_fields
    parser.add_argument("--input", required=True, metavar="FILE", help=fields["input"].description)
    parser.add_argument("--schema", dest="schema_file", required=True, metavar="YAML",
                        help=fields["schema_file"].description)
    parser.add_argument("--out", required=True, metavar="DIR", help=fields["out"].description)
    parser.add_argument("--epsilon", type=float, required=True,
                        help=fields["epsilon"].description)
    for name in ("delta", "rows", "seed"):
        f = fields[name]
        parser.add_argument("--" + name, type=type(f.default), default=f.default,
                            help=f"{f.description} (default: {f.default})")
    parser.add_argument("--synthesizer", choices=get_args(Synthesizers),
                        default=DEFAULT_SYNTHESIZER,
                        help=f"{fields['synthesizer'].description} (default: "
                             f"{DEFAULT_SYNTHESIZER})")
    for name, kind in (("epochs", int), ("batch_size", int), ("max_grad_norm", float),
                       ("lr", float)):
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                            help=fields[name].description)
    parser.add_argument("--accountant", choices=["prv", "rdp"], default=None,
                        help=fields["accountant"].description)
    parser.add_argument("--ledger", default=None, metavar="DB",
                        help=fields["ledger"].description)
    parser.add_argument("--noise-seed", type=int, default=None,
                        help=fields["noise_seed"].description)
    for name in ("secure_noise", "clip", "map_unknown", "overwrite"):
        parser.add_argument("--" + name.replace("_", "-"), action="store_true",
                            help=fields[name].description)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    return RunConfig(**{k: v for k, v in vars(args).items() if k in RunConfig.model_fields})
