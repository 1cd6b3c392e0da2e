"""The release flow's parameters: RunConfig's fields, flat, with the settings of one
synthesizer family grouped.

A deployment stores its parameters and a run's parameters replace them key by key (Prefect
merges the two dictionaries one level deep), so a run that changes ``epsilon`` alone must
find ``epsilon`` at the top: ``prefect deployment run synth-release/adult-demo --param
epsilon=0.5`` keeps the deployment's input, schema and output. The DP-SGD settings (which
dp-marginals does not take), dp-marginals' own and the input-handling switches are groups
of their own, so the run form shows the settings every release needs first. The signature
is made from ``RunConfig``'s fields (their types, bounds, defaults and descriptions), so the
form and the command line cannot drift apart.
"""
# No `from __future__ import annotations` here (see flows/release.py).

import inspect
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, create_model

from pipelines.config import FidelityThresholds, RunConfig

FIELDS = RunConfig.model_fields
TOP = ("input", "schema_file", "out", "epsilon", "delta", "rows", "synthesizer", "seed",
       "overwrite", "ledger", "noise_seed")


def _group(name: str, doc: str, names: tuple[str, ...]) -> type[BaseModel]:
    # (type, FieldInfo) per field; every RunConfig field has an annotation
    fields: dict[str, Any] = {n: (FIELDS[n].annotation, FIELDS[n]) for n in names}
    model = create_model(name, __config__=ConfigDict(extra="forbid"), __doc__=doc, **fields)
    return model


DPSGDSettings = _group(
    "DPSGDSettings", "DP-SGD settings: dp-ctgan, dp-vae and the image synthesizers "
    "(empty: the synthesizer's defaults; dp-marginals takes none of them)",
    ("epochs", "batch_size", "max_grad_norm", "lr", "accountant", "secure_noise",
     "checkpoint_every"))
MarginalsSettings = _group(
    "MarginalsSettings", "dp-marginals settings (empty: its defaults; the other "
    "synthesizers take none of them)", ("components",))
InputHandling = _group(
    "InputHandling", "How the private input is read: out-of-range values, undeclared "
    "categories, the held-out share, batching of large Parquet inputs",
    ("clip", "map_unknown", "holdout", "batch_above_rows"))
GROUPS: dict[str, type[BaseModel]] = {"dp_sgd": DPSGDSettings, "marginals": MarginalsSettings,
                                      "input_handling": InputHandling}
GROUP_DOCS = {"dp_sgd": DPSGDSettings.__doc__, "marginals": MarginalsSettings.__doc__,
              "input_handling": InputHandling.__doc__,
              "fidelity": FIELDS["fidelity"].description}
assert set(TOP) | {n for g in GROUPS.values() for n in g.model_fields} | {"fidelity"} \
    == set(FIELDS), "every RunConfig field is a flow parameter"


def signature() -> inspect.Signature:
    """The flow's signature: the top-level fields, then the groups and the fidelity bounds
    (keyword-only; their types carry RunConfig's bounds, so the run form shows them)."""
    params = []
    for name in TOP:
        field = FIELDS[name]
        default = inspect.Parameter.empty if field.is_required() else field.default
        params.append(inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=default,
            annotation=Annotated[(field.annotation, *field.metadata)] if field.metadata
            else field.annotation))
    for name, model in GROUPS.items():
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=model | None))
    params.append(inspect.Parameter("fidelity", inspect.Parameter.KEYWORD_ONLY,
                                    default=None, annotation=FidelityThresholds | None))
    return inspect.Signature(params, return_annotation=dict)


def docstring(summary: str) -> str:
    """``summary`` and an Args section (Prefect shows it on the run form)."""
    args = [f"    {name}: {FIELDS[name].description}" for name in TOP]
    args += [f"    {name}: {doc}" for name, doc in GROUP_DOCS.items()]
    return f"{summary}\n\nArgs:\n" + "\n".join(args) + "\n"


def config_of(params: dict[str, Any]) -> RunConfig:
    """The RunConfig of the flow's parameters (groups flattened; an empty group keeps the
    defaults). Raises pydantic's ValidationError as RunConfig does."""
    given = {k: v for k, v in params.items() if k in TOP}
    for name in GROUPS:
        group = params.get(name)
        if isinstance(group, BaseModel):
            group = group.model_dump(exclude_unset=True)
        given.update(group or {})
    if params.get("fidelity") is not None:
        given["fidelity"] = params["fidelity"]
    return RunConfig(**given)


def parameters(config: RunConfig) -> dict[str, Any]:
    """The flow's parameters for ``config``: the fields it sets (JSON values), grouped."""
    flat = config.model_dump(mode="json", exclude_unset=True)
    out = {k: v for k, v in flat.items() if k in TOP}
    for name, model in GROUPS.items():
        group = {k: v for k, v in flat.items() if k in model.model_fields}
        if group:
            out[name] = group
    if "fidelity" in flat:
        out["fidelity"] = flat["fidelity"]
    return out
