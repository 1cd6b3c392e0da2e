"""The ``synth`` command line.

Exit status: 0 on success, 2 for bad input or usage (the message names the file, column and
row), 3 when the synthetic data fails validation (nothing is published).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from pydantic import ValidationError

from pipelines.config import add_run_arguments, config_from_args

# Idle OpenMP threads sleep rather than spin, and torch.load never runs pickle code (see
# flows/__init__.py); before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "1")

EXIT_BAD_INPUT = 2
EXIT_VALIDATION = 3

EPILOG = """examples:
  synth schema draft data.csv > schemas/mydata.yaml      # then review it by hand
  synth schema draft data.csv --epsilon 0.5 > schemas/mydata.yaml  # DP, charged to 'data'
  synth schema check schemas/mydata.yaml
  synth schema from-sdv metadata.json > schemas/mydata.yaml  # SDV's metadata: fill in bounds
  synth run --input data.csv --schema schemas/mydata.yaml --epsilon 1 --out releases/mydata
  synth budget                                            # what each data set has spent
  synth verify releases/mydata                            # the files match the manifest
"""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one bounded ``error:`` line (exit 2), as every other,
    that names what was probably meant (``pipelines.usage``: a mistyped option or
    subcommand); a command given no subcommand prints its help instead (exit 2: nothing ran)."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        self._words = [str(w) for w in (sys.argv[1:] if args is None else args)]
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        from pipelines.usage import explain, missing_subcommand, unknown_options
        from schemas.limits import bounded

        words = getattr(self, "_words", [])
        if missing_subcommand(self, message) and not unknown_options([self], words):
            self.print_help()
            self.exit(EXIT_BAD_INPUT)
        about, message = explain(self, message, words)
        self.exit(EXIT_BAD_INPUT, f"error: {bounded(f'{about.prog}: {message}')} (see "
                                  f"{about.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="synth", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Differentially private synthetic data: from a private table to a "
                    "validated Parquet release.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train a DP synthesizer and publish a validated release",
                         description="Ingest a private CSV/Parquet file, train a DP "
                         "synthesizer under (epsilon, delta), sample, validate with Great "
                         "Expectations and publish Parquet plus a privacy report, atomically.")
    add_run_arguments(run)
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    schema = sub.add_parser("schema", help="draft, check or convert a schema (SDV metadata)"
                            ).add_subparsers(
        dest="schema_command", required=True)
    draft = schema.add_parser(
        "draft", help="print a draft schema read from a private file (review it before "
        "treating it as public)",
        description="Prints a draft schema for a CSV (with a header line) or Parquet file. "
        "Without --epsilon it is read without differential privacy and marked `draft: {dp: "
        "false}`: `synth run` refuses it until a person has reviewed every value and deleted "
        "that line; no value held by fewer than 10 rows is printed. With --epsilon it is "
        "read under (epsilon, delta)-DP, charged to the budget ledger under --name, and "
        "marked `draft: {dp: true, ...}`; `synth run` accepts it (review it for sense). "
        "See docs/schema-draft.md.")
    draft.add_argument("data", nargs="?", help="CSV (with a header line) or Parquet file")
    draft.add_argument("--input", action="append", metavar="TABLE=FILE", help="linked tables "
                       "instead of one file, once per table (a multi-table draft: keys, the "
                       "person table, caps on rows per person, sequences; without DP)")
    draft.add_argument("--name", help="the data set's name, written into the schema and, for "
                       "a DP draft, the ledger's key for its budget (default: the file name "
                       "up to its first dot)")
    draft.add_argument("--epsilon", type=float, help="draft under differential privacy, "
                       "spending this epsilon from the data set's budget")
    draft.add_argument("--delta", type=float, help="the DP draft's delta (default: 1e-9, "
                       "as `synth run`)")
    draft.add_argument("--ledger", metavar="DB", help="the budget ledger a DP draft is "
                       "charged to (default: as `synth run`)")
    check = schema.add_parser("check", help="parse a schema and report any contradiction")
    check.add_argument("schema_file", metavar="SCHEMA")
    from_sdv = schema.add_parser(
        "from-sdv", help="print a draft schema from SDV's single-table metadata JSON",
        description="Prints a draft schema for the table an SDV metadata JSON file describes "
        "(SDV's single-table format, or its multi-table format holding one table or naming one "
        "with --table). SDV's metadata has no bounds or category lists: the draft marks each "
        "with FILL IN and carries `draft: {dp: false}`, which `synth run` refuses until the "
        "values are declared from public knowledge and the line deleted. See docs/sdv.md.")
    from_sdv.add_argument("metadata", metavar="METADATA", help="SDV metadata JSON file")
    from_sdv.add_argument("--table", help="the table of multi-table metadata")
    from_sdv.add_argument("--name", help="the data set's name (default: the table's name, "
                          "else the file name up to its first dot)")
    to_sdv = schema.add_parser("to-sdv", help="print SDV single-table metadata JSON for a "
                               "schema", description="Prints SDV's single-table metadata "
                               "(sdtypes, no bounds or categories) for the input table a "
                               "schema declares. See docs/sdv.md.")
    to_sdv.add_argument("schema_file", metavar="SCHEMA")
    budget = sub.add_parser("budget", help="show the privacy budget ledger: what each data "
                            "set's releases have spent",
                            description="Every run reserves its (epsilon, delta) in the ledger "
                            "before reading data; a data set's releases add up (basic "
                            "composition) against the total its schema declares.")
    budget.add_argument("--ledger", metavar="DB", help="ledger database: a SQLite file or "
                        "a postgresql://user@host/db URL (default: $SYNTH_LEDGER_URL, else "
                        "$SYNTH_HOME/ledger.db, else ~/.dp-synth/ledger.db)")
    verify = sub.add_parser("verify", help="check a release against its manifest",
                            description="Checks that a release folder is complete: every "
                            "file its manifest.json lists is there with the same size and "
                            "sha256, nothing else is, and data.parquet has its footer.")
    verify.add_argument("release", metavar="DIR", help="release folder")
    return parser


def _version() -> str:
    from pipelines.report import code_version

    return f"synth {code_version()}"


def _progress(enabled: bool):
    """A progress bar on a terminal (``pipelines.progress.terminal``)."""
    from pipelines.progress import terminal

    return terminal(enabled)


def _run(args: argparse.Namespace) -> int:
    """``synth run``: the recipe of ``pipelines.recipe`` for the kind the schema declares."""
    from pipelines.plan import internal_dir
    from pipelines.recipe import kind_of, run_release

    config = config_from_args(args)
    with _progress(not args.quiet and sys.stderr.isatty()) as progress:
        result = run_release(config, progress=progress)
    r, out = result.report, result.release
    kind = kind_of(config).name
    images = kind == "image"
    if kind == "multi-table":
        rows = r["rows_released"]
        for table, count in rows.items():
            print(f"table:    {out / (table + '.parquet')} ({count:,} rows)")
        print(f"report:   {out / 'report.html'} (release-safe), {out / 'privacy_report.json'}")
        print(f"validation: {out / 'validation.json'} ({r['validation']})")
        print(f"privacy:  epsilon={r['epsilon']:.4f} delta={r['delta']:g} per person "
              f"({r['accountant']} accountant, {len(r.get('measurements', []))} private "
              f"measurements); {r['synthesizer']}")
        return 0
    print(f"release:  {out / 'data.parquet'}")
    if images:
        print(f"report:   {out / 'report.html'}, {out / 'privacy_report.json'}")
        print(f"contact sheet: {out / 'contact_sheet.png'}")
    else:
        print(f"report:   {out / 'report.html'} (release-safe), {out / 'privacy_report.json'}")
        print(f"internal: {internal_dir(out) / 'report.html'} (real-data statistics: keep "
              "it private)")
    print(f"validation: {out / 'validation.json'} ({r['validation']})")
    how = (f"noise multiplier {r['noise_multiplier']:.3f}, {r['steps']} steps at sampling "
           f"rate {r['sampling_rate']:.4f}" if "steps" in r else
           f"{len(r.get('measurements', []))} private measurements")
    print(f"privacy:  epsilon={r['epsilon']:.4f} delta={r['delta']:g} ({r['accountant']} "
          f"accountant, {how}); {r['synthesizer']}, {r['rows_released']:,} "
          f"{'images' if images else 'rows'}")
    return 0


def _budget(args: argparse.Namespace) -> int:
    from pipelines.budget_view import data_set_lines, entry_lines
    from pipelines.ledger import Ledger

    ledger = Ledger(args.ledger)
    exists = ledger.exists()
    if exists:
        ledger.release_stale()  # runs killed before training spent nothing
    entries = ledger.history() if exists else []
    if not entries:
        print(f"{ledger.location}: no runs recorded")
        return 0
    print(f"ledger: {ledger.location}")  # a PostgreSQL URL's password masked
    print("\n".join(entry_lines(entries) + data_set_lines(entries)))
    return 0


def guarded(call: Callable[[], int]) -> int:
    """Runs ``call``; a failure becomes one ``error:`` line of bounded length
    (``schemas.limits.bounded``) and its exit status: 2 for bad input or usage, 3 for a
    release that failed its checks, 1 for anything unforeseen (a bug: the traceback with
    ``SYNTH_DEBUG=1``), 130 for an interrupt."""
    from pipelines.errors import DataError
    from pipelines.publish import PublishError
    from pipelines.validate import ValidationFailed
    from pipelines.validate.images import ImageCheckFailed
    from schemas import SchemaError
    from schemas.limits import LimitError, bounded
    from synth.privacy import BudgetError

    def say(message: str) -> None:
        print(f"error: {bounded(message)}", file=sys.stderr)

    try:
        return call()
    except ValidationFailed as exc:
        say(f"{exc}; nothing was published at the release location")
        return EXIT_VALIDATION
    except ImageCheckFailed as exc:
        say(f"{exc}; nothing was published")
        return EXIT_VALIDATION
    except ValidationError as exc:
        say("; ".join(f"{'.'.join(map(str, e['loc']))}: "
                      f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors()))
        return EXIT_BAD_INPUT
    except (DataError, SchemaError, BudgetError, PublishError, LimitError) as exc:
        say(str(exc))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        say("interrupted (run the same command again: it resumes from the last checkpoint "
            "where there is one, and does nothing if the release was already published)")
        return 130
    except Exception as exc:  # one line, not a traceback that may quote data
        if os.environ.get("SYNTH_DEBUG"):
            raise
        say(f"unexpected {type(exc).__name__}: {exc} (a bug: please report it; "
            "SYNTH_DEBUG=1 shows the traceback)")
        return 1


def quiet_libraries() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s",
                        stream=sys.stderr)
    for noisy in ("great_expectations", "opacus"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    quiet_libraries()
    args = build_parser().parse_args(argv)
    return guarded(lambda: _dispatch(args))


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        return _run(args)
    if args.command == "budget":
        return _budget(args)
    if args.command == "verify":
        from pipelines.publish import verify_release

        problems = verify_release(args.release)
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        if not problems:
            print(f"{args.release}: complete (every file matches manifest.json)")
        return EXIT_BAD_INPUT if problems else 0
    if args.schema_command == "draft":
        return _draft(args)
    if args.schema_command in ("from-sdv", "to-sdv"):
        return _sdv(args)

    from schemas import is_image_schema, load_image_schema, load_schema
    from schemas.relational import is_multi_table_schema, load_multi_table_schema

    if is_multi_table_schema(args.schema_file):
        linked = load_multi_table_schema(args.schema_file)
        print(f"{args.schema_file}: ok ({linked.name} v{linked.version}, multi-table: "
              + ", ".join(f"{t} ({len(linked.tables[t].columns)} columns)"
                          for t in linked.names) + f"; the person: a row of {linked.person})")
        if linked.draft is not None and not linked.draft.dp:
            print(f"{args.schema_file}: an unreviewed draft read without DP: `synth run` "
                  "refuses it until every value is reviewed and its `draft:` line deleted")
        return 0
    if is_image_schema(args.schema_file):
        image = load_image_schema(args.schema_file)
        print(f"{args.schema_file}: ok ({image.name} v{image.version}, image "
              f"{image.height}x{image.width}x{image.channels}, {len(image.labels)} labels)")
        return 0

    schema = load_schema(args.schema_file)
    print(f"{args.schema_file}: ok ({schema.name} v{schema.version}, "
          f"{len(schema.columns)} columns)")
    if schema.draft is not None and not schema.draft.dp:
        print(f"{args.schema_file}: an unreviewed draft read without DP: `synth run` refuses "
              "it until every value is reviewed and its `draft:` line deleted")
    elif schema.draft is not None:
        print(f"{args.schema_file}: a DP draft (epsilon={schema.draft.epsilon:g}, delta="
              f"{schema.draft.delta:g}, charged to '{schema.name}'): `synth run` accepts it; "
              "review it for sense, then delete its `draft:` line")
    return 0


def _sdv(args: argparse.Namespace) -> int:
    """``synth schema from-sdv`` and ``to-sdv`` (``pipelines.sdv_metadata``)."""
    import json

    from pipelines.sdv_metadata import schema_from_sdv, schema_to_sdv
    from schemas import SchemaError, is_image_schema, load_schema

    if args.schema_command == "from-sdv":
        sys.stdout.write(schema_from_sdv(args.metadata, name=args.name, table=args.table))
        print("the draft above needs every FILL IN declared from public knowledge, then its "
              "`draft:` line deleted (`synth schema check` lists what is missing; `synth "
              "run` refuses it until then)", file=sys.stderr)
        return 0
    if is_image_schema(args.schema_file):
        raise SchemaError(f"{args.schema_file}: an image schema has no SDV single-table form")
    print(json.dumps(schema_to_sdv(load_schema(args.schema_file)), indent=2))
    return 0


def _draft_linked(args: argparse.Namespace) -> int:
    """``synth schema draft --input T=FILE --input U=FILE``: the plain multi-table draft."""
    from pipelines.config import input_argument
    from pipelines.draft.linked import draft_linked_schema
    from pipelines.errors import DataError

    if args.data is not None or args.epsilon is not None:
        raise DataError("a multi-table draft takes --input TABLE=FILE only (no FILE, no "
                        "--epsilon: it is drafted without DP, for review)")
    inputs = input_argument(args.input)
    if not isinstance(inputs, dict):
        raise DataError("--input TABLE=FILE, once per table (two or more)")
    sys.stdout.write(draft_linked_schema(inputs, name=args.name))
    print("the draft above was read from the private tables without DP: review every table, "
          "key, cap and sequence, then delete its `draft:` line (`synth run` refuses it "
          "until then)", file=sys.stderr)
    return 0


def _draft(args: argparse.Namespace) -> int:
    """``synth schema draft``: the plain draft, or with --epsilon the DP one."""
    from pipelines.draft import draft_dp_schema, draft_schema
    from pipelines.errors import DataError
    from synth.privacy import DEFAULT_DELTA

    if args.input:
        return _draft_linked(args)
    if args.data is None:
        raise DataError("synth schema draft: give a FILE, or --input TABLE=FILE for each of "
                        "linked tables")
    if args.epsilon is None:
        if args.delta is not None or args.ledger is not None:
            raise DataError("--delta and --ledger apply to a DP draft only: give --epsilon")
        sys.stdout.write(draft_schema(args.data, name=args.name))
        print("the draft above was read from the private data without DP: review every "
              "bound, category and role, then delete its `draft:` line (`synth run` refuses "
              "it until then)", file=sys.stderr)
        return 0
    drafted = draft_dp_schema(args.data, args.epsilon,
                              DEFAULT_DELTA if args.delta is None else args.delta,
                              name=args.name, ledger=args.ledger)
    sys.stdout.write(drafted.text)
    print(f"DP draft: epsilon={drafted.epsilon:.4g}, delta={drafted.delta:.3g} charged to "
          f"data set '{drafted.name}' in {drafted.ledger} (entry {drafted.entry}); review it "
          "for sense, then delete its `draft:` line", file=sys.stderr)
    return 0

if __name__ == "__main__":
    sys.exit(main())
