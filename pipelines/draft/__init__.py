"""Draft a schema from a private file, for its owner to review.

Both drafts carry a ``draft:`` line that stays until a person has reviewed the schema and
deleted it (see docs/schema-draft.md):

- ``draft_schema`` reads the rows WITHOUT differential privacy and writes
  ``draft: {dp: false}``: ``synth run`` refuses the schema until that line is gone. It never
  prints a value held by fewer than ``RARE`` rows: numeric and date bounds rest on the
  RARE-th smallest and largest values, rounded outward to round numbers, so no record beyond
  them moves a bound by itself (and up to RARE - 1 values of a column may lie beyond its
  bounds: ``synth run --clip``, or widen them); categories held by fewer rows are left out,
  counted but not named, and a ``catch_all`` takes them under ``--map-unknown``. What it
  reads from every row: each column's kind, whether any value is missing, whether any age is
  over 89, which values are shaped like identifiers. A float column's ``decimals:`` is the
  most decimals that at least RARE values are written with (at most ``MOST_DECIMALS``).
- ``draft_dp_schema`` reads them under (epsilon, delta)-DP, charged to the data set's budget
  in the ledger under its name, and writes ``draft: {dp: true, epsilon: .., delta: ..}``:
  kinds, bounds, categories and nullability all come from noisy counts (``synth.describe``).
  It proposes no ``decimals:`` (a value's precision would be one more private read, left to
  the reviewer, as its header says). ``synth run`` accepts it; it still wants a review.

The parts (this package re-exports the names other code uses):

    source    the private file read, and the data set's identity
    shapes    what values look like: identifier shapes and names, ZIP codes, booleans
    drafted   what a draft says about one column; round bounds, the catch-all
    render    either draft written as YAML, with Safe Harbor roles proposed for review
    plain     the plain draft (no DP; nothing held by fewer than RARE rows printed)
    dp        the DP draft (noisy histograms, charged to the ledger)
"""

from pipelines.draft.dp import (
    FINER,
    GRID,
    HISTOGRAMS,
    PRESENT,
    SHAPE_KEYS,
    WHOLE_KEYS,
    DpDraft,
    draft_dp_schema,
)
from pipelines.draft.drafted import CATCH_ALL, bounds, round_out
from pipelines.draft.plain import MOST_DECIMALS, NUMBER, RARE, decimals, draft_schema
from pipelines.draft.render import AGE_NAMES, BIRTH_NAMES
from pipelines.draft.shapes import (
    BOOLEAN_TOKENS,
    IDENTIFIER_NAMES,
    MAX_CATEGORIES,
    NEAR_UNIQUE,
    SHAPED,
    SHAPES,
    ZIP_NAMES,
    ZIP_SHAPE,
    identifier_reasons,
)
from pipelines.draft.source import data_set_name, read_table

__all__ = ["AGE_NAMES", "BIRTH_NAMES", "BOOLEAN_TOKENS", "CATCH_ALL", "FINER", "GRID",
           "HISTOGRAMS", "IDENTIFIER_NAMES", "MAX_CATEGORIES", "MOST_DECIMALS", "NEAR_UNIQUE",
           "NUMBER", "PRESENT", "RARE", "SHAPED", "SHAPES", "SHAPE_KEYS", "WHOLE_KEYS",
           "ZIP_NAMES", "ZIP_SHAPE", "DpDraft",
           "bounds", "data_set_name", "decimals", "draft_dp_schema", "draft_schema",
           "identifier_reasons", "read_table", "round_out"]
