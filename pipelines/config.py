"""The configuration of one release run, shared by ``synth run`` and the Prefect flow.

A pydantic model, because Prefect renders it as the run form and config files load into it.
"""

from __future__ import annotations

import argparse
from typing import Literal

from pydantic import BaseModel, Field

from synth.privacy import DEFAULT_DELTA

DEFAULT_ROWS = 10_000


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
    synthesizer: Literal["dp-vae"] = Field("dp-vae", description="Synthesizer")
    epochs: int = Field(10, ge=1, le=10_000, description="DP-SGD epochs")
    batch_size: int = Field(1024, ge=1, description="Expected batch size (Poisson sampling)")
    max_grad_norm: float = Field(0.1, gt=0, description="Per-sample gradient clipping bound")
    lr: float = Field(1e-2, gt=0, description="Learning rate")
    accountant: Literal["prv", "rdp"] = Field("prv", description="Opacus privacy accountant")
    seed: int = Field(0, description="Seed for weight initialisation and sampling")
    noise_seed: int | None = Field(None, description="Seed of the private randomness (DP "
                                   "noise, Poisson sampling). Leave empty: a fresh seed from "
                                   "the operating system is drawn per run. A fixed one makes "
                                   "the run reproducible for tests and must never be published")
    secure_noise: bool = Field(False, description="Draw the DP noise from the operating "
                               "system's cryptographically secure generator (slower)")
    clip: bool = Field(False, description="Clip out-of-bounds values instead of rejecting")
    map_unknown: bool = Field(False, description="Map undeclared categories to the column's "
                              "declared catch_all instead of rejecting")
    overwrite: bool = Field(False, description="Replace an existing release at `out`")

    def synthesizer_params(self) -> dict:
        return {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                "max_grad_norm": self.max_grad_norm, "accountant": self.accountant,
                "seed": self.seed, "noise_seed": self.noise_seed,
                "secure_noise": self.secure_noise}


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line form of RunConfig (used by ``synth run`` and ``python -m flows.release``)."""
    fields = RunConfig.model_fields
    parser.add_argument("--input", required=True, metavar="FILE", help=fields["input"].description)
    parser.add_argument("--schema", dest="schema_file", required=True, metavar="YAML",
                        help=fields["schema_file"].description)
    parser.add_argument("--out", required=True, metavar="DIR", help=fields["out"].description)
    parser.add_argument("--epsilon", type=float, required=True,
                        help=fields["epsilon"].description)
    for name in ("delta", "rows", "epochs", "batch_size", "max_grad_norm", "lr", "seed"):
        f = fields[name]
        parser.add_argument("--" + name.replace("_", "-"), type=type(f.default), default=f.default,
                            help=f"{f.description} (default: {f.default})")
    parser.add_argument("--synthesizer", choices=["dp-vae"], default="dp-vae",
                        help="Synthesizer (default: dp-vae)")
    parser.add_argument("--accountant", choices=["prv", "rdp"], default="prv",
                        help=fields["accountant"].description + " (default: prv)")
    parser.add_argument("--noise-seed", type=int, default=None,
                        help=fields["noise_seed"].description)
    for name in ("secure_noise", "clip", "map_unknown", "overwrite"):
        parser.add_argument("--" + name.replace("_", "-"), action="store_true",
                            help=fields[name].description)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    return RunConfig(**{k: v for k, v in vars(args).items() if k in RunConfig.model_fields})
