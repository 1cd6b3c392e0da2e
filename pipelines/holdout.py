"""Which real records are held out of training: an independent secret coin per record.

The leakage checks of the internal report compare the release with records it never saw.
Which records those are must not depend on anything but the record itself: the training set
of a data set with one record added or removed then differs in at most that record, so the
split costs no privacy (a per-record filter is 1-stable), whatever the number and order of
the other rows.

Each record's coin is a keyed hash (BLAKE2b, 128-bit secret key) of its values, compared with
the held-out share. The key comes from the operating system's CSPRNG for every run, so
nobody can tell from the public seed which records trained; a test that fixes the run's
``noise_seed`` fixes the key too. Equal records share a coin, which keeps the split a
function of each record alone.
"""

from __future__ import annotations

import hashlib
import secrets

import numpy as np
import pandas as pd

KEY_BYTES = 16


def holdout_key(noise_seed: int | None) -> bytes:
    """The split's secret key: fresh from the OS unless a test fixed ``noise_seed``."""
    if noise_seed is None:
        return secrets.token_bytes(KEY_BYTES)
    return hashlib.sha256(f"holdout:{noise_seed}".encode()).digest()[:KEY_BYTES]


def held_out(frame: pd.DataFrame, share: float, key: bytes) -> np.ndarray:
    """(rows,) bool: True for the records of ``frame`` held out of training.

    Args:
        frame: the coerced records (one column per schema column).
        share: the probability that a record is held out; 0 holds out none.
        key: the secret key of the coins (``holdout_key``).
    """
    if share <= 0 or not len(frame):
        return np.zeros(len(frame), dtype=bool)
    # one 64-bit digest of each row's values (pandas hashes each cell by value, never by
    # position), then a keyed hash of that: a uniform coin per record
    rows = pd.util.hash_pandas_object(frame, index=False).to_numpy(np.uint64)
    threshold = int(share * 2**64)
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(int(h).to_bytes(8, "little"), digest_size=8,
                                        key=key).digest(), "little") < threshold
         for h in rows), dtype=bool, count=len(rows))


def split(frame: pd.DataFrame, share: float, key: bytes) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training records, held-out records) of ``frame``, each in input order."""
    held = held_out(frame, share, key)
    return (frame[~held].reset_index(drop=True), frame[held].reset_index(drop=True))
