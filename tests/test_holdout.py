"""The holdout split is a secret coin per record: neighbouring inputs train on the same
records but the one added or removed, whatever the row order or count."""

import numpy as np
import pandas as pd

from pipelines import holdout


def frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"age": pd.array(rng.integers(17, 90, n), dtype="Int64"),
                         "hours": rng.normal(40, 10, n),
                         "sex": pd.Categorical(rng.choice(["F", "M"], n))})


def records(df: pd.DataFrame) -> list[tuple]:
    return sorted(map(tuple, df.astype(object).itertuples(index=False)))


def test_neighbours_train_on_the_same_records_but_one():
    data, key = frame(3000), holdout.holdout_key(7)
    train, held = holdout.split(data, 0.1, key)
    assert 200 < len(held) < 400 and len(train) + len(held) == len(data)
    removed, _ = holdout.split(data.drop(index=1234), 0.1, key)
    assert len(set(records(train)) ^ set(records(removed))) <= 1
    added, _ = holdout.split(pd.concat([data, frame(1, seed=99)], ignore_index=True), 0.1,
                             key)
    assert len(set(records(train)) ^ set(records(added))) <= 1
    shuffled, _ = holdout.split(data.sample(frac=1, random_state=3), 0.1, key)
    assert records(shuffled) == records(train)  # the order of the rows plays no part


def test_the_key_is_secret_and_the_seed_only_fixes_it_for_tests():
    assert holdout.holdout_key(None) != holdout.holdout_key(None)
    assert holdout.holdout_key(3) == holdout.holdout_key(3) != holdout.holdout_key(4)
    data = frame(2000)
    one = holdout.held_out(data, 0.5, holdout.holdout_key(None))
    two = holdout.held_out(data, 0.5, holdout.holdout_key(None))
    assert 0.4 < one.mean() < 0.6 and (one != two).mean() > 0.3


def test_no_holdout_and_tiny_inputs():
    data = frame(5)
    train, held = holdout.split(data, 0.0, holdout.holdout_key(1))
    assert len(train) == 5 and len(held) == 0
    # no exception for few rows: the rule is the same for every size
    train, held = holdout.split(data, 0.5, holdout.holdout_key(1))
    assert len(train) + len(held) == 5


def test_a_release_goes_out_when_every_record_was_held_out(tmp_path):
    """Equal records share a coin, so a table of one distinct record is held out whole with
    the holdout's probability (noise seed 8 does it): the synthesizer trains on no row, the
    advisory checks that need training rows are skipped, and the release still goes out."""
    from pipelines.config import RunConfig
    from pipelines.recipe import run_release

    assert holdout.held_out(pd.DataFrame({"age": [33] * 5}), 0.1, holdout.holdout_key(8)).all()
    schema = tmp_path / "s.yaml"
    schema.write_text('name: same\nversion: "1"\ncolumns:\n'
                      "  - {name: age, kind: integer, min: 0, max: 120}\n")
    data = tmp_path / "same.csv"
    data.write_text("age\n" + "33\n" * 200)
    result = run_release(RunConfig(input=str(data), schema_file=str(schema), epsilon=1,
                                   out=str(tmp_path / "out"), rows=50, noise_seed=8,
                                   ledger=str(tmp_path / "l.db")))
    assert result.verdict.leakage is None
    assert len(pd.read_parquet(result.release / "data.parquet")) == 50
