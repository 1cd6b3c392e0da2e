"""Writes data/medical/patients.csv.gz: a FABRICATED medical table for the demo and tests.

Nothing here describes a real person: identifiers come from Faker (seed 20260101), the
clinical columns from a small simulation (fixed numpy seed). It is shaped like a hospital
extract: direct identifiers, dates of birth, admission and discharge, a ZIP code, an age, an
ICD-10-like diagnosis code with a long tail of rare codes, and a survival outcome (days of
follow-up after admission, death or censoring at the end of a 5-year follow-up).

    python data/medical/make_demo.py      # deterministic: the same file every time
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
from faker import Faker

ROWS = 8000
FOLLOW_UP = 1825  # days: five years after admission
HERE = Path(__file__).parent
# ICD-10 three-character categories (public WHO classification), most common first.
CODES = ["I10", "E11", "I25", "J44", "I50", "N18", "J18", "I48", "F32", "E78", "K21", "M17",
         "C34", "C50", "C18", "C61", "I63", "I21", "N39", "A41", "K80", "K57", "G30", "F03",
         "J45", "E03", "D64", "M81", "S72", "R55", "G20", "C25", "C16", "C67", "C90", "K70",
         "B20", "G35", "E10", "I26"]
ZIP3 = ["100", "101", "103", "104", "105", "106", "107", "108", "109", "110", "111", "112",
        "113", "114", "115", "116", "117", "118", "119", "120"]
SPARSE = ["036", "059", "063"]  # sparse prefixes (HHS list): must come out as 000


def main() -> None:
    rng = np.random.default_rng(20260101)
    fake = Faker("en_US")
    fake.seed_instance(20260101)
    admission = pd.Timestamp("2015-01-01") + pd.to_timedelta(
        rng.integers(0, 365 * 5, ROWS), unit="D")
    age = np.clip(rng.normal(66, 14, ROWS).round(), 18, 104).astype(int)
    birth = admission - pd.to_timedelta(age * 365.25 + rng.integers(0, 365, ROWS), unit="D")
    weights = 1 / np.arange(1, len(CODES) + 1) ** 1.3  # Zipf: the last codes are rare
    code = rng.choice(CODES, ROWS, p=weights / weights.sum())
    severe = np.isin(code, ["C34", "C25", "C16", "I50", "A41", "G30", "C90"])
    hazard = np.exp(-9.0 + 0.08 * (age - 65) + 1.6 * severe)  # per day
    death_day = rng.exponential(1 / hazard)
    censor_day = rng.uniform(200, FOLLOW_UP + 1, ROWS)
    end = np.minimum(np.minimum(death_day, censor_day), FOLLOW_UP)
    zips = rng.choice(ZIP3 + SPARSE, ROWS, p=[0.99 / len(ZIP3)] * len(ZIP3)
                      + [0.01 / len(SPARSE)] * len(SPARSE))
    frame = pd.DataFrame({
        "mrn": [f"MRN{fake.unique.random_number(digits=8, fix_len=True)}" for _ in range(ROWS)],
        "first_name": [fake.first_name() for _ in range(ROWS)],
        "last_name": [fake.last_name() for _ in range(ROWS)],
        "ssn": [fake.unique.ssn() for _ in range(ROWS)],
        "phone": [fake.unique.phone_number() for _ in range(ROWS)],
        "email": [fake.unique.email() for _ in range(ROWS)],
        "address": [fake.street_address() for _ in range(ROWS)],
        "zip_code": [z + f"{rng.integers(0, 100):02d}" for z in zips],
        "date_of_birth": birth.date,
        "admission_date": admission.date,
        "discharge_date": (admission + pd.to_timedelta(
            np.minimum(rng.geometric(0.2, ROWS), 60), unit="D")).date,
        "age": age,
        "sex": rng.choice(["F", "M"], ROWS),
        "diagnosis": code,
        "systolic_bp": np.clip(rng.normal(132, 18, ROWS), 70, 230).round(),
        "follow_up_days": np.floor(end).astype(int),
        "died": np.where(death_day <= np.minimum(censor_day, FOLLOW_UP), "yes", "no"),
    })
    with gzip.GzipFile(HERE / "patients.csv.gz", "wb", mtime=0) as out:  # byte-stable
        out.write(frame.to_csv(index=False).encode())


if __name__ == "__main__":
    main()
