"""One registry of synthesizers (synth/registry.py): the command line, the run config (and so
Prefect's form), the factories and the help all derive from it."""

from typing import get_args

import pytest

from pipelines.cli import build_parser
from pipelines.config import RunConfig, Synthesizers
from synth import registry
from synth.base import make_synthesizer, synthesizer_names
from synth.images import IMAGE_SYNTHESIZERS, image_synthesizer_names, make_image_synthesizer


def test_every_list_of_synthesizers_is_the_registrys():
    assert set(get_args(Synthesizers)) == set(registry.NAMES)
    run = build_parser()._subparsers._group_actions[0].choices["run"]
    [choice] = [a for a in run._actions if "--synthesizer" in a.option_strings]
    assert set(choice.choices) == set(registry.NAMES)
    assert synthesizer_names() == registry.names("table")
    assert image_synthesizer_names() == sorted(IMAGE_SYNTHESIZERS) == registry.names("image")
    assert set(registry.names("table")) | set(registry.names("image")) | set(
        registry.names("multi-table")) == set(registry.NAMES)
    description = RunConfig.model_fields["synthesizer"].description
    assert all(f"{name}: " in description for name in registry.NAMES)


@pytest.mark.parametrize("entry", registry.SYNTHESIZERS, ids=lambda e: e.name)
def test_every_entry_makes_a_synthesizer_of_its_kind(entry):
    make = {"table": make_synthesizer, "image": make_image_synthesizer,
            "multi-table": lambda name, **p: registry.make(name, "multi-table", **p)}[entry.kind]
    model = make(entry.name, seed=3)
    assert type(model) is entry.load() and model.get_params()["seed"] == 3
    assert callable(model.fit) and callable(model.sample)
    takes_dpsgd = {"epochs", "max_grad_norm"} <= set(model.get_params())
    assert takes_dpsgd == entry.dpsgd


def test_a_name_of_another_kind_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="known: dp-ctgan, dp-independent"):
        make_synthesizer("dp-conv-gan")
    with pytest.raises(ValueError, match="image synthesizer 'dp-vae'; known: dp-conv-gan"):
        make_image_synthesizer("dp-vae")
