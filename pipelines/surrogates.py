"""Fake surrogate values for the identifier columns a release should carry.

A schema may ask, per identifier column, for ``surrogate: <Faker provider>`` (``ssn``,
``name``, ``phone_number``, ``email``...) or ``surrogate: {pattern: "MRN-########"}``
(Faker's ``bothify``: ``#`` a digit, ``?`` a letter). The values are generated from the schema
and a seed only, never from the input: they are post-processing, cost no privacy, and carry
no information about any real record. One row gets one value per column, unique within the
column (a surrogate key must not join two synthetic rows).

A value drawn from a small pool (a first name) may coincide with a real one by chance; such a
coincidence reveals nothing, but prefer high-entropy patterns (record numbers, SSN-shaped
strings) for columns whose real values must never be seen in a release.

``pipelines.run.generate`` adds them to the synthetic rows; validation and the fidelity
and leakage checks look at the trained columns only, and ``publish`` writes surrogate
columns first, as non-null strings.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import pandas as pd

from schemas import Schema
from schemas.roles import Identifier

MAX_TRIES = 50  # draws per row before a provider is declared too small for unique values


@dataclass(frozen=True)
class SurrogateError(ValueError):
    """A surrogate the schema asks for cannot be generated."""

    message: str

    def __str__(self) -> str:
        return self.message


def surrogate_columns(schema: Schema) -> tuple[Identifier, ...]:
    """The identifier columns the release carries as surrogates, in declared order."""
    return tuple(i for i in schema.identifiers if i.surrogate is not None)


def surrogate_seed(noise_seed: int | None) -> int:
    """The surrogates' secret seed: fresh from the OS unless a test fixed ``noise_seed``."""
    if noise_seed is None:
        return secrets.randbits(128)
    return int.from_bytes(hashlib.sha256(f"surrogates:{noise_seed}".encode()).digest()[:16],
                          "little")


def generate(identifier: Identifier, rows: int, seed: int, locale: str = "en_US") -> pd.Series:
    """``rows`` unique fake values for one identifier column.

    Args:
        identifier: the schema's declaration (its ``surrogate`` says how).
        rows: how many values.
        seed: seeds Faker (``surrogate_seed``); with the column name, so two columns never
            share a stream.
        locale: Faker's locale.

    Raises:
        SurrogateError: the provider does not exist or cannot give ``rows`` unique values.
    """
    from faker import Faker

    fake = Faker(locale)
    fake.seed_instance(f"{seed}:{identifier.name}")
    how = identifier.surrogate
    assert how is not None  # callers pass surrogate_columns (identifiers with a surrogate)
    if how.startswith("pattern:"):
        pattern = how[len("pattern:"):]
        draw = lambda: fake.bothify(pattern)
    else:
        provider = getattr(fake, how, None)
        if not callable(provider):
            raise SurrogateError(f"column '{identifier.name}': surrogate '{how}' is not a "
                                 "Faker provider: use one such as name, ssn, phone_number, "
                                 "email, address, or {pattern: 'MRN-########'}")
        draw = lambda: str(provider())
    seen: set[str] = set()
    values: list[str] = []
    for _ in range(rows):
        for _ in range(MAX_TRIES):
            value = draw()
            if value not in seen:
                break
        else:
            raise SurrogateError(f"column '{identifier.name}': surrogate '{how}' gave no new "
                                 f"value in {MAX_TRIES} tries after {len(values):,}: use a "
                                 "pattern with more digits")
        seen.add(value)
        values.append(value)
    return pd.Series(values, name=identifier.name, dtype="string")


def add_surrogates(frame: pd.DataFrame, schema: Schema, seed: int) -> pd.DataFrame:
    """The synthetic rows with the schema's surrogate identifier columns in front, in their
    declared order (a copy; the synthetic columns are untouched); ``seed`` is secret
    (``surrogate_seed``)."""
    wanted = surrogate_columns(schema)
    if not wanted:
        return frame
    fakes = {i.name: generate(i, len(frame), seed).set_axis(frame.index) for i in wanted}
    return pd.concat([pd.DataFrame(fakes), frame], axis=1)
