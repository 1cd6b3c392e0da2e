"""What a column's values look like, as both drafts ask it: shapes and names of direct
identifiers (HIPAA's list), ZIP codes, booleans, and how many categories a categorical column
may have. The names and patterns are public; the plain draft matches them on the rows, the DP
draft counts them under noise.
"""

from __future__ import annotations

import re

import pandas as pd

MAX_CATEGORIES = 50  # more distinct strings than this: not a categorical column
NEAR_UNIQUE = 0.9  # share of distinct values above which a text column looks like a key
SHAPED = 0.9  # share of values of an identifier's shape above which the column is one
IDENTIFIER_NAMES = re.compile(
    r"name|mrn|ssn|social.?security|e.?mail|phone|fax|mobile|address|street|medical.?record|"
    r"record.?(no|num)|patient.?id|account|licen[cs]e|passport|ip.?addr|url|device.?id",
    re.IGNORECASE)
SHAPES = {  # value shapes of direct identifiers (HIPAA's list), matched on whole values
    "e-mail addresses": re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}"),
    "SSNs": re.compile(r"\d{3}-\d{2}-\d{4}"),
    "phone numbers": re.compile(r"(\+?\d{1,3}[-. ]?)?\(?\d{3}\)?[-. ]?\d{3}[-. ]?\d{4}"
                                r"(\s*(x|ext\.?)\s*\d+)?"),
    "record numbers": re.compile(r"[A-Za-z]{1,5}[-#]?\d{4,}"),
}
ZIP_NAMES = re.compile(r"zip|postal|postcode", re.IGNORECASE)
ZIP_SHAPE = re.compile(r"\d{5}(-?\d{4})?")
# Only true/false is drafted as a boolean (released as true/false): a column of yes/no, y/n or
# other pairs is drafted as categorical with the data's own values, so the release speaks the
# data's vocabulary (a boolean would print Yes/No back as True/False).
BOOLEAN_TOKENS = {"true", "false"}


def identifier_reasons(name: str, values: pd.Series) -> list[str]:
    """Why a column looks like a direct identifier (empty: it does not). Says nothing about
    any value, so the reasons can be printed."""
    present = values.dropna().astype(str)
    hit = IDENTIFIER_NAMES.search(name)
    reasons = [f"its name contains '{hit.group(0)}'"] if hit else []
    if not len(present):
        return reasons
    if pd.to_numeric(present, errors="coerce").notna().all() or \
            pd.to_datetime(present, errors="coerce", format="ISO8601").notna().all():
        return reasons  # measurements and dates are not keys, whatever their spread
    for what, shape in SHAPES.items():
        if present.str.fullmatch(shape.pattern).mean() >= SHAPED:
            reasons.append(f"its values are shaped like {what}")
            break
    if present.nunique() >= NEAR_UNIQUE * len(present) and len(present) >= 20:
        reasons.append("nearly every row has its own value")
    return reasons


def looks_like_zip(name: str, values: pd.Series) -> bool:
    present = values.dropna().astype(str)
    return len(present) > 0 and present.str.fullmatch(ZIP_SHAPE.pattern).mean() >= SHAPED and (
        bool(ZIP_NAMES.search(name)) or present.str.startswith("0").any())
