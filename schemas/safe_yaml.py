"""Reading a schema file's YAML safely: one bounded line for every bad file, and no input
that can exhaust memory, the stack or the clock.

``yaml.safe_load`` is safe against code execution, not against size: aliases expand without
bound ("billion laughs"), deep nesting overflows the recursion of its composer, and a key
written twice silently keeps its last value (``max: 90`` then ``max: 1000000000``). A schema
needs none of YAML's anchors, aliases, merge keys or tags for sets and ordered maps, so
``read_yaml`` refuses them and builds the document from the parser's events itself, with an
explicit stack (nothing recurses), checking as it goes:

- that it is a regular file (a pipe would wait for a writer, a device may never end), its
  size before it is read (``limits().schema_bytes``), and that its bytes are UTF-8;
- characters that YAML does not allow, by line;
- the nesting depth (``limits().schema_depth``), refused at the first level too deep;
- anchors and aliases, merge keys (``<<``), tags other than YAML's plain scalar ones, a key
  that is a list or a mapping, a key written twice in one mapping, a second document.

Every refusal is a ``SchemaError`` of one line that names the file and the line, and quotes
at most ``schemas.model.SHOWN`` characters of the document.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # no stubs installed; followed as Any
from yaml.constructor import SafeConstructor  # type: ignore[import-untyped]
from yaml.nodes import ScalarNode  # type: ignore[import-untyped]
from yaml.resolver import Resolver  # type: ignore[import-untyped]

from schemas.limits import LimitError, Limits, bounded, limits
from schemas.model import SHOWN, SchemaError, show

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when installed
_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = frozenset(_TAG + t for t in ("null", "bool", "int", "float", "binary",
                                            "timestamp", "str"))
_COLLECTION_TAGS = frozenset({None, "!", _TAG + "seq", _TAG + "map"})
# The characters YAML 1.1 allows in a stream (PyYAML's reader refuses the others)
_NOT_ALLOWED = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd"
                          "\U00010000-\U0010ffff]")
_NO_KEY = object()  # a mapping frame waiting for its next key


def read_yaml(path: Path, what: str = "schema") -> Any:
    """The YAML document of the file ``path`` (None when it holds none), read safely.

    Args:
        path: the file.
        what: how messages name the file's content ("schema", "image schema").

    Raises:
        SchemaError: one bounded line naming the file, and the line where it can: the file
            cannot be read, is past a limit, is not UTF-8, does not parse, or holds something
            a schema never needs (see the module's docstring).
    """
    try:
        lim = limits()
    except LimitError as exc:
        raise SchemaError(bounded(f"{path}: {exc}")) from None
    try:
        text = _read_text(path, what, lim)
        return _build(text, path, what, lim)
    except SchemaError as exc:
        raise SchemaError(bounded(str(exc))) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = str(exc.problem or exc.context or "")[:2 * SHOWN]
        if "nesting depth" in problem:  # libyaml's own bound on flow nesting (1,000)
            problem += f" (a {what} needs at most {lim.schema_depth} levels)"
        raise SchemaError(bounded(f"{path}: {what} does not parse as YAML{at}: "
                                  f"{problem}")) from None
    except (yaml.YAMLError, RecursionError, MemoryError, ValueError, TypeError,
            OverflowError) as exc:  # none is expected past the checks: still one line
        raise SchemaError(bounded(f"{path}: {what} does not parse as YAML: "
                                  f"{type(exc).__name__}: {str(exc)[:2 * SHOWN]}")) from None


def _read_text(path: Path, what: str, lim: Limits) -> str:
    """The file's text: its size checked before reading, its bytes checked to be UTF-8."""
    try:
        info = path.stat()
    except OSError as exc:
        raise SchemaError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise SchemaError(f"{path}: cannot read {what}: it is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):  # a pipe waits for a writer, /dev/zero never ends
        raise SchemaError(f"{path}: cannot read {what}: not a regular file (a pipe, socket or "
                          "device); save the schema to a file")
    _check(lim, "schema_bytes", info.st_size, f"{path}: {what} file size in bytes")
    try:
        with path.open("rb") as stream:  # one byte past the limit: a file that grew meanwhile
            data = stream.read(lim.schema_bytes + 1)
    except OSError as exc:
        raise SchemaError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    _check(lim, "schema_bytes", len(data), f"{path}: {what} file size in bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SchemaError(f"{path}: line {line}: {what} is not UTF-8 text (byte "
                          f"0x{data[exc.start]:02x} at offset {exc.start:,}): save it as "
                          "UTF-8") from None
    text = text.removeprefix("\ufeff")  # a byte order mark
    bad = _NOT_ALLOWED.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        raise SchemaError(f"{path}: line {line}: character U+{ord(bad.group()):04X} is not "
                          "allowed in YAML (a control character: is this a text file?)")
    return text


def _check(lim: Limits, name: str, value: float, what: str) -> None:
    """``Limits.check`` as a SchemaError."""
    try:
        lim.check(name, value, what)
    except LimitError as exc:
        raise SchemaError(str(exc)) from None


@dataclass
class _Frame:
    """A list or mapping being built; a mapping remembers each key's line."""

    items: list | dict
    key: Any = _NO_KEY
    key_line: int = 0
    lines: dict = field(default_factory=dict)


def _build(text: str, path: Path, what: str, lim: Limits) -> Any:
    """The document built from the parser's events, with an explicit stack."""
    resolver, constructor = Resolver(), SafeConstructor()
    stack: list[_Frame] = []
    documents, root = 0, None
    for event in yaml.parse(text, Loader=_LOADER):
        line = event.start_mark.line + 1 if event.start_mark is not None else 0
        where = f"{path}: line {line}"
        if isinstance(event, yaml.AliasEvent):
            raise SchemaError(f"{where}: YAML alias *{event.anchor[:40]} refused: "
                              f"a {what} needs no anchors or aliases (they can expand without "
                              "bound): write the value out")
        if getattr(event, "anchor", None) is not None:
            raise SchemaError(f"{where}: YAML anchor &{event.anchor[:40]} refused: "
                              f"a {what} needs no anchors or aliases (they can expand without "
                              "bound): write the value out")
        if isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise SchemaError(f"{where}: a second YAML document ('---'): a {what} file "
                                  "holds one")
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            if event.tag not in _COLLECTION_TAGS:
                raise SchemaError(f"{where}: YAML tag {_short(event.tag)} refused: a {what} "
                                  "holds only plain mappings, lists and values")
            _check(lim, "schema_depth", len(stack) + 1, f"{where}: {what} nesting depth")
            mapping = isinstance(event, yaml.MappingStartEvent)
            stack.append(_Frame({} if mapping else []))
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            done = stack.pop()
            if stack:
                _add(stack, done.items, line, where)
            else:
                root = done.items
        elif isinstance(event, yaml.ScalarEvent):
            value = _scalar(event, resolver, constructor, where, what)
            if stack:
                _add(stack, value, line, where)
            else:
                root = value
    return root


def _short(tag: str) -> str:
    """A tag as it is written (``!!set`` for YAML's own), cut to 40 characters."""
    return show("!!" + tag[len(_TAG):] if tag.startswith(_TAG) else tag, 40)


def _scalar(event: yaml.ScalarEvent, resolver: Resolver, constructor: SafeConstructor,
            where: str, what: str) -> Any:
    """A scalar's value, resolved and constructed as ``yaml.safe_load`` does."""
    tag = event.tag
    if tag is None or tag == "!":
        tag = resolver.resolve(ScalarNode, event.value, event.implicit)
    if tag == _TAG + "merge":
        raise SchemaError(f"{where}: YAML merge key '<<' refused: a {what} needs no merge "
                          "keys: write each key out")
    if tag == _TAG + "value":  # '=' as a plain scalar: safe_load reads it as a string
        tag = _TAG + "str"
    if tag not in _SCALAR_TAGS:
        raise SchemaError(f"{where}: YAML tag {_short(tag)} refused: a {what} holds only "
                          "plain mappings, lists and values")
    node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
    try:
        return SafeConstructor.yaml_constructors[tag](constructor, node)
    except (ValueError, OverflowError) as exc:  # e.g. an integer of 5,000 digits
        raise SchemaError(f"{where}: value {show(event.value)} cannot be read: "
                          f"{str(exc).split(':')[0][:SHOWN]}") from None


def _add(stack: list[_Frame], value: Any, line: int, where: str) -> None:
    """Puts ``value`` into the innermost list, or as the key or value of the innermost
    mapping, refusing a key that is not a plain value or that the mapping already holds."""
    frame = stack[-1]
    if isinstance(frame.items, list):
        frame.items.append(value)
    elif frame.key is _NO_KEY:
        try:
            hash(value)
        except TypeError:
            raise SchemaError(f"{where}: a mapping key must be a plain value, not a "
                              f"{'mapping' if isinstance(value, dict) else 'list'}") from None
        if value in frame.items:
            raise SchemaError(f"{where}: duplicate key {show(value)} (first at line "
                              f"{frame.lines[value]}): YAML would keep only the last value; "
                              "write each key once")
        frame.key, frame.key_line = value, line
    else:
        frame.items[frame.key] = value
        frame.lines[frame.key] = frame.key_line
        frame.key = _NO_KEY
