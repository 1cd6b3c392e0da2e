"""The configuration of one release run, shared by ``synth run`` and the Prefect flow.

A pydantic model, because Prefect renders it as the run form and config files load into it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from schemas.limits import LimitError, limits
from synth import registry
from synth.privacy import DEFAULT_DELTA, MAX_EPSILON, MIN_DELTA, MIN_EPSILON

DEFAULT_ROWS = 10_000
DEFAULT_SYNTHESIZER = registry.DEFAULT["table"]
# every synthesizer of synth.registry; the image ones apply to image schemas
# (pipelines/image_run.py)
Synthesizers = Literal[registry.NAMES]  # type: ignore[valid-type]
TUNABLE = ("epochs", "batch_size", "max_grad_norm", "lr", "accountant", "components")


class FidelityThresholds(BaseModel):
    """Bounds of the fidelity checks. The release gate compares the synthetic rows with the
    marginals the synthesizer measured under DP (``measured_tv_max`` for one column,
    ``measured_joint_tv_max`` for several, each plus what the measurement's noise explains);
    a release that breaks one is quarantined. The other bounds are those of the advisory
    fidelity suite against the real rows, in the data owner's internal report only: they
    never decide publication."""

    model_config = {"extra": "forbid", "frozen": True}

    enabled: bool = Field(default=True, description="Run the fidelity checks (off: the gate is the "
                          "schema suite and the canary audit alone)")
    ks_max: float = Field(default=0.10, ge=0, le=1, description="Largest Kolmogorov-Smirnov "
                          "distance per numeric or date column")
    measured_tv_max: float = Field(default=0.10, ge=0, le=1, description="Release gate: largest "
                                   "total variation distance between a 1-way marginal the "
                                   "synthesizer measured under DP and the release's, beyond "
                                   "what the measurement's noise explains")
    measured_joint_tv_max: float = Field(default=0.15, ge=0, le=1, description="Release gate: the "
                                         "same for a measured marginal of several columns")
    tv_max: float = Field(default=0.10, ge=0, le=1, description="Largest total variation distance "
                          "per categorical or boolean column (advisory, against the real rows)")
    association_max: float = Field(default=0.05, ge=0, le=1, description="Largest mean absolute "
                                   "difference of the association matrices (Cramer's V)")
    pmse_max: float = Field(default=0.10, ge=0, le=0.25, description="Largest propensity MSE of a "
                            "real-vs-synthetic classifier (0 = indistinguishable, 0.25 = "
                            "separable)")
    tstr_min: float = Field(default=0.70, ge=-1, le=1, description="Smallest score on real rows of "
                            "a model of the schema's target trained on synthetic rows (AUROC; "
                            "R^2 for a numeric target)")


class RunConfig(BaseModel):
    """One release: which private file, which schema, how much privacy, where to publish."""

    model_config = {"extra": "forbid", "allow_inf_nan": False}

    input: str | dict[str, str] = Field(description="Private input table (CSV, optionally "
                                        ".gz, or Parquet); for a multi-table schema, each "
                                        "table's file by table name")
    schema_file: str = Field(description="Schema YAML declaring columns, bounds and categories")
    out: str = Field(description="Release directory to create (data.parquet + reports)")
    epsilon: float = Field(ge=MIN_EPSILON, le=MAX_EPSILON, description="Total privacy "
                           f"budget epsilon for this release ({MIN_EPSILON:g} to "
                           f"{MAX_EPSILON:g})")
    delta: float = Field(DEFAULT_DELTA, ge=MIN_DELTA, lt=1, description="Privacy parameter "
                         f"delta ({MIN_DELTA:g} to below 1)")
    rows: int = Field(DEFAULT_ROWS, ge=1, description="Synthetic rows to publish (a fixed "
                      "number: the real row count is private and never used as a default; "
                      "at most $SYNTH_MAX_ROWS, default 100,000,000)")
    synthesizer: Synthesizers = Field(DEFAULT_SYNTHESIZER, description="Synthesizer ("
                                      + registry.describe() + ")")
    epochs: int | None = Field(None, ge=1, le=10_000, description="DP-SGD epochs (dp-vae, "
                               "dp-ctgan; empty: the synthesizer's default)")
    batch_size: int | None = Field(None, ge=1, le=10**8, description="Expected batch size of "
                                   "Poisson "
                                   "sampling (dp-vae, dp-ctgan)")
    max_grad_norm: float | None = Field(None, gt=0, le=1e6, description="Per-sample gradient "
                                        "clipping bound (dp-vae, dp-ctgan)")
    lr: float | None = Field(None, gt=0, le=100, description="Learning rate (dp-vae, dp-ctgan)")
    accountant: Literal["prv", "rdp"] | None = Field(None, description="Opacus privacy "
                                                      "accountant of DP-SGD (dp-vae, dp-ctgan; "
                                                      "default prv)")
    components: int | None = Field(None, ge=1, le=65_536, description="Mixture components of "
                                   "dp-marginals' estimator (empty: its default; fewer fit "
                                   "faster and keep less of the joint structure)")
    seed: int = Field(0, ge=0, lt=2**63, description="Seed for weight initialisation and sampling")
    noise_seed: int | None = Field(None, ge=0, lt=2**63, description="Seed of the private "
                                   "randomness (DP "
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
    ledger: str | None = Field(None, description="Privacy budget ledger database: a SQLite "
                               "file or a postgresql://user@host/db URL (default: "
                               "$SYNTH_LEDGER_URL, else $SYNTH_HOME/ledger.db, else "
                               "~/.dp-synth/ledger.db)")
    checkpoint_every: int = Field(200, ge=0, le=10**9, description="DP-SGD steps between training "
                                  "checkpoints (dp-vae, dp-ctgan and the image models; 0: "
                                  "none). A killed run, started again with the same "
                                  "settings, resumes from its last checkpoint")
    batch_above_rows: int = Field(2_000_000, ge=0, le=2**62, description="Parquet inputs of "
                                  "more rows "
                                  "are read in batches and encoded as they are read (memory: "
                                  "one batch plus compact codes); the checks then use a "
                                  "random sample of 200,000 real rows")
    holdout: float = Field(0.1, ge=0, lt=0.9, description="Share of the real rows held out "
                           "of training, to compare leakage checks with (0: none)")
    fidelity: FidelityThresholds = Field(default_factory=FidelityThresholds,
                                         description="Bounds of the fidelity suite")

    @field_validator("epsilon", "delta", mode="before")
    @classmethod
    def _budget(cls, value: object, info: ValidationInfo) -> object:
        """The range every accountant handles (synth.privacy.PrivacyBudget), said plainly
        (the field's own bounds, which the run form shows, would print 1e-30 in full)."""
        low, high = (MIN_EPSILON, MAX_EPSILON) if info.field_name == "epsilon" else (
            MIN_DELTA, 1.0)
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return value  # pydantic says what it is not
        if not low <= number <= high or (info.field_name == "delta" and number == 1):
            raise ValueError(f"must be a number from {low:g} to {high:g}"
                             + (" (exclusive)" if info.field_name == "delta" else ""))
        return value

    @field_validator("rows")
    @classmethod
    def _within_limit(cls, value: int) -> int:
        """Stops an absurd request (a trillion rows) before anything is read or spent."""
        try:
            limits().check("rows", value, "rows")
        except LimitError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("ledger")
    @classmethod
    def _no_password(cls, value: str | None) -> str | None:
        """A run's settings are stored (Prefect keeps a run's parameters, the UI shows
        them): a ledger URL must not carry its password."""
        if value and "://" in value:
            parts = urlsplit(value)
            if parts.password is not None or "password=" in parts.query:
                raise ValueError("the ledger URL holds a password, which would be stored "
                                 "with the run's settings: give it through PGPASSWORD or "
                                 "~/.pgpass instead")
        return value

    @property
    def path(self) -> str:
        """The one input file or folder of a table or image run (a multi-table run's inputs
        are ``input`` by table).

        Raises:
            ValueError: the input names tables.
        """
        if not isinstance(self.input, str):
            raise ValueError("TABLE=FILE inputs are for multi-table schemas: pass --input FILE")
        return self.input

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
    """The command-line form of RunConfig (``synth run`` and ``python -m flows.release``)."""
    fields = RunConfig.model_fields
    parser.add_argument("--input", required=True, action="append", metavar="FILE",
                        help=f"{fields['input'].description} (--input TABLE=FILE, once per "
                        "table)")
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
                       ("lr", float), ("components", int)):
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
    parser.add_argument("--checkpoint-every", type=int, metavar="STEPS",
                        default=fields["checkpoint_every"].default,
                        help=f"{fields['checkpoint_every'].description} (default: "
                             f"{fields['checkpoint_every'].default})")
    parser.add_argument("--batch-above-rows", type=int, metavar="ROWS",
                        default=fields["batch_above_rows"].default,
                        help=f"{fields['batch_above_rows'].description} (default: "
                             f"{fields['batch_above_rows'].default:,})")
    parser.add_argument("--holdout", type=float, default=fields["holdout"].default,
                        help=f"{fields['holdout'].description} (default: "
                             f"{fields['holdout'].default})")
    gates = FidelityThresholds.model_fields
    parser.add_argument("--no-fidelity", dest="fidelity_enabled", action="store_false",
                        help="Skip the fidelity suite: structural checks from the schema only")
    parser.add_argument("--fidelity-threshold", action="append", default=[],
                        metavar="NAME=VALUE", help="Override a fidelity bound, e.g. "
                        "pmse_max=0.2 (repeatable; " + "; ".join(
                            f"{k} default {f.default}" for k, f in gates.items()
                            if k != "enabled") + ")")


def input_argument(values: list[str]) -> str | dict[str, str]:
    """``--input FILE``, or ``--input TABLE=FILE`` once per table of a multi-table schema.

    Raises:
        DataError: a table named twice, a second FILE without a table name.
    """
    from pipelines.errors import DataError

    if len(values) == 1 and ("=" not in values[0] or Path(values[0]).exists()):
        return values[0]
    out: dict[str, str] = {}
    for value in values:
        table, sep, path = value.partition("=")
        if sep and table and not path:
            raise DataError(f"--input {value!r}: no file after {table}=: --input TABLE=FILE")
        if not sep or not table:
            raise DataError(f"--input {value!r}: with several inputs, name each one's table: "
                            "--input TABLE=FILE")
        if table in out:
            raise DataError(f"--input names table {table!r} twice")
        out[table] = path
    return out


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The RunConfig of parsed arguments.

    Raises:
        DataError: a malformed ``--fidelity-threshold``; pydantic's ValidationError for a
            bad value.
    """
    from pipelines.errors import DataError

    given = {k: v for k, v in vars(args).items() if k in RunConfig.model_fields}
    if isinstance(given.get("input"), list):
        given["input"] = input_argument(given["input"])
    gates: dict = {"enabled": getattr(args, "fidelity_enabled", True)}
    for item in getattr(args, "fidelity_threshold", None) or []:
        name, sep, value = item.partition("=")
        if not sep or name.strip() not in FidelityThresholds.model_fields or name == "enabled":
            raise DataError(f"--fidelity-threshold {item!r}: expected NAME=VALUE with NAME "
                             "one of " + ", ".join(k for k in FidelityThresholds.model_fields
                                                   if k != "enabled"))
        gates[name.strip()] = value.strip()
    return RunConfig(**given, fidelity=FidelityThresholds(**gates))
