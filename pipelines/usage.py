"""Usage errors that say what was probably meant: ``--epsilom`` -> "did you mean --epsilon?".

``pipelines.cli.Parser`` (the ``synth`` command line and the flows' own) passes argparse's
message and the words it was given through ``explain``: an option it does not know is named
with the closest options of the command it was given to (``difflib``'s close matches), an
invalid choice (a subcommand, a synthesizer) with the closest choices. A missing required
option that was mistyped (``--epsilom 1`` for the required ``--epsilon``) is reported as the
mistyped option, the likelier cause.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import re

MATCHES = 2  # the most suggestions one unknown word gets
SHOWN = 3  # the most unknown words one message names
CUTOFF = 0.6  # difflib's similarity below which nothing is suggested

_CHOICE = re.compile(r"invalid choice: (?P<value>'.*?'|\".*?\") \(choose from (?P<choices>.*)\)$")
_NUMBER = re.compile(r"^-\.?\d")  # a negative number, not an option


def subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    """The parser's subcommands (its ``add_subparsers`` action), or None."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def chain(parser: argparse.ArgumentParser, words: list[str]) -> list[argparse.ArgumentParser]:
    """The parser and the subcommands' parsers that ``words`` address, in turn."""
    out = [parser]
    for word in words:
        if word == "--":
            break
        action = subcommands(out[-1])
        if action is not None and word in action.choices:
            out.append(action.choices[word])
    return out


def unknown_options(parsers: list[argparse.ArgumentParser], words: list[str]) -> list[str]:
    """The words that look like options (``-x``, ``--name``, ``--name=value``) and that none
    of ``parsers`` knows, not even as an abbreviation."""
    known = [o for p in parsers for o in p._option_string_actions]
    out = []
    for word in words:
        if word == "--":
            break
        if not word.startswith("-") or word == "-" or _NUMBER.match(word):
            continue
        name = word.split("=", 1)[0]
        if name in known or (name.startswith("--") and any(k.startswith(name) for k in known)):
            continue
        out.append(name)
    return list(dict.fromkeys(out))


def _meant(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=MATCHES, cutoff=CUTOFF)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def unrecognized(parser: argparse.ArgumentParser, unknown: list[str]) -> str:
    """"unrecognized argument --epsilom (did you mean --epsilon?)", for up to ``SHOWN``
    unknown options of ``parser``."""
    options = [o for o in parser._option_string_actions if o.startswith("--")] + [
        o for o in parser._option_string_actions if not o.startswith("--")]
    parts = [f"{word}{_meant(word, options)}" for word in unknown[:SHOWN]]
    more = f" and {len(unknown) - SHOWN} more" if len(unknown) > SHOWN else ""
    return (f"unrecognized argument{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(parts)}{more}")


def explain(parser: argparse.ArgumentParser, message: str, words: list[str]
            ) -> tuple[argparse.ArgumentParser, str]:
    """argparse's ``message`` for ``parser``, given ``words``, with what was probably meant,
    and the (sub)command it concerns.

    Args:
        parser: the parser that reports the error (the top one for unrecognized arguments,
            a subcommand's for its own required options and choices).
        message: argparse's message.
        words: the words that parser was given.
    """
    if message.startswith("unrecognized arguments:"):
        parsers = chain(parser, words)
        unknown = unknown_options(parsers, words)
        return parsers[-1], unrecognized(parsers[-1], unknown) if unknown else message
    if message.startswith("the following arguments are required:"):
        unknown = unknown_options([parser], words)
        if unknown:  # a mistyped option is the likelier cause
            return parser, f"{unrecognized(parser, unknown)}; {message}"
        return parser, message
    found = _CHOICE.search(message)
    if found:
        try:
            value = ast.literal_eval(found["value"])
            choices = [str(c) for c in ast.literal_eval(f"[{found['choices']}]")]
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return parser, message
        close = difflib.get_close_matches(str(value), choices, n=MATCHES, cutoff=CUTOFF)
        if close:
            return parser, f"{message} (did you mean {' or '.join(close)}?)"
    return parser, message


def missing_subcommand(parser: argparse.ArgumentParser, message: str) -> bool:
    """Whether ``message`` says that ``parser`` was given no subcommand."""
    action = subcommands(parser)
    if action is None or not message.startswith("the following arguments are required:"):
        return False
    missing = [m.strip() for m in message.partition(":")[2].split(",")]
    return argparse._get_action_name(action) in missing
