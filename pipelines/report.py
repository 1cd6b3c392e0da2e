"""The privacy report and the key-value metadata a release carries."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from schemas import ImageSchema, Schema
from schemas.relational import MultiTableSchema
from synth.base import Synthesizer
from synth.multitable import PersonMarginals

PACKAGE = "dp-synth"


def code_version() -> str:
    """The package version, plus the git commit when run from a checkout."""
    try:
        version = importlib_metadata.version(PACKAGE)
    except importlib_metadata.PackageNotFoundError:
        version = "unknown"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{version}+g{commit}" if commit else version


def privacy_report(schema: Schema | ImageSchema | MultiTableSchema, synthesizer: str,
                   model: Synthesizer | PersonMarginals, rows: int, created: str
                   ) -> dict[str, Any]:
    """What the release claims, how it was computed, and what was treated as public."""
    p = model.privacy_
    params = model.get_params()
    fixed = params.get("noise_seed") is not None
    if fixed:
        params["noise_seed"] = "fixed (value withheld)"
    dpsgd = p.steps is not None
    report = {
        "guarantee": f"({p.epsilon:.4g}, {p.delta:.3g})-differential privacy for every record "
                     f"of the input (add/remove one record), covering every step that read it",
        "epsilon": p.epsilon,
        "delta": p.delta,
        "target_epsilon": p.target_epsilon,
        "accountant": p.accountant,
        "mechanism": p.mechanism,
    }
    if dpsgd:
        report.update(noise_multiplier=p.noise_multiplier, sampling_rate=p.sampling_rate,
                      steps=p.steps, max_grad_norm=p.max_grad_norm,
                      expected_batch_size=p.expected_batch_size)
    if p.measurements:
        report["measurements"] = list(p.measurements)
    report.update({
        "synthesizer": synthesizer,
        "synthesizer_params": params,
        "noise": _noise(params, fixed, dpsgd, counts=bool(p.measurements)),
        "rows_released": rows,
        "data_set": schema.name,
        "schema_version": schema.version,
        "schema_fingerprint": schema.fingerprint(),
        "public_inputs": [
            "the schema (column names, kinds, declared bounds, categories, nullability)",
            ("nothing about the input records: their number is used only through a noisy count "
             "(Gaussian mechanism, listed under measurements and paid for), which sets "
             "sampling_rate, steps and expected_batch_size") if dpsgd else
            ("nothing about the input records: even their number is only used through noisy "
             "counts"),
            "the number of released rows, fixed by the configuration",
        ],
        "private_steps": [("ingest (coercion to the schema; nothing released; counts of repaired "
                           "values go to the operator's log only)"),
                          p.mechanism],
        "post_processing": ["sampling from the fitted model", "validation against the "
                            "schema (synthetic rows only)", "Parquet writing"],
        "not_covered": [
            "that a run refused its input (a value outside the schema) tells that some record "
            "breaks the schema; --clip and --map-unknown repair record by record instead",
            "whether a rerun was skipped tells whether the input's bytes changed",
            "the internal report and the operator's terminal hold statistics of the real rows "
            "by design: withholding a release after reading them acts outside this guarantee",
        ],
        "created": created,
        "code_version": code_version(),
    })
    return report


def _noise(params: dict[str, Any], fixed: bool, dpsgd: bool, counts: bool) -> str:
    if fixed:
        return ("seeded with a FIXED noise_seed: reproducible, for testing only; anyone who "
                "knows the seed can regenerate the noise, so do not rely on this release's "
                "guarantee")
    if params.get("secure_noise"):
        return ("Gaussian noise from the operating system's CSPRNG (os.urandom, Box-Muller in "
                "float64)" + ("; Poisson sampling from a Philox generator keyed afresh with "
                              "128 bits from it for this run" if dpsgd else ""))
    if dpsgd:
        return ("DP-SGD noise and Poisson sampling from a Philox generator keyed afresh with "
                "128 bits from the operating system's CSPRNG for this run" + (
                    "; the noised counts (the record count, any histogram) from the operating "
                    "system's CSPRNG" if counts else ""))
    return "OpenDP's exact samplers (discrete Gaussian, Gumbel), fed by a cryptographically " \
           "secure generator: nothing to regenerate the noise from"


def release_metadata(report: dict[str, Any], validation: str) -> dict[str, str]:
    """Parquet key-value metadata (all strings) for a release."""
    keys = ("data_set", "schema_version", "synthesizer", "epsilon", "delta", "accountant",
            "mechanism", "noise_multiplier", "sampling_rate", "steps", "created",
            "code_version")
    out = {k: str(report[k]) for k in keys if k in report}
    out["synthesizer_params"] = json.dumps(report["synthesizer_params"], sort_keys=True)
    out["rows"] = str(report["rows_released"])
    out["validation"] = validation
    return out


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
