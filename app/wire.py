"""What clients send, decoded once and vetted before anything else reads it: HTTP bodies
(GuardMiddleware, app/http.py) and WebSocket frames (the same middleware, for both
graphql-transport-ws and the legacy graphql-ws protocol). Both GraphQL paths — compiled
plans and strawberry's executor — and every resolver see only requests that passed here.

- **Nesting**: JSON is parsed only after a scan shows it is at most `MAX_JSON_DEPTH` levels
  deep (no real request needs more than 6), so a frame of 20,000 `[` is refused in
  microseconds, never by a `RecursionError` somewhere in a handler.
- **Text that cannot be encoded**: JSON may carry a lone UTF-16 surrogate (`"\\ud800"` is
  valid JSON) or a NUL, which no UTF-8 encoder, password hasher or PostgreSQL text column
  takes. `hostile_text` finds the first such string anywhere in a GraphQL request (in a
  variable, in an inline literal of the document, in `operationName` or `extensions`) and
  answers one `BAD_USER_INPUT` error naming where: `$input.email` for a variable,
  `login.email` (field.argument[.input field…]) for a literal. One check for every field,
  present and future: nothing per resolver."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    ValueNode,
    parse,
)

MAX_JSON_DEPTH = 32
UNENCODABLE = "text that cannot be encoded (a lone UTF-16 surrogate or a NUL character)"

# A JSON string (skipped whole) or a bracket: the scanner's tokens.
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
# Characters no request may carry: unpaired surrogates (json.loads pairs the valid ones)
# and NUL.
_BAD_CHAR = re.compile("[\ud800-\udfff\x00]")
# In a GraphQL document: an escape (after an even run of backslashes) that decodes to NUL
# or to a surrogate; a surrogate escape is bad unless it is the high half of a pair
# followed by the low half.
_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*(\\u(?:\{0*([0-9A-Fa-f]{1,6})\}|([0-9A-Fa-f]{4})))")


class WireError(ValueError):
    """Why a body or frame is refused (the message is safe to show the client)."""


def too_deep(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when the JSON `text` nests arrays and objects more than `limit` deep (strings
    are skipped, so brackets in a GraphQL document do not count)."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", "replace")
    if text.count("[") + text.count("{") <= limit:
        return False  # the common case: not even that many brackets
    depth = 0
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > limit:
                return True
        elif token in "]}":
            depth -= 1
    return False


def loads(data: str | bytes) -> Any:
    """JSON from a client: UTF-8, at most MAX_JSON_DEPTH deep; WireError otherwise."""
    if isinstance(data, bytes | bytearray):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as error:
            raise WireError("The request body must be UTF-8 JSON.") from error
    if too_deep(data):
        raise WireError(f"JSON nested more than {MAX_JSON_DEPTH} levels deep is not accepted.")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as error:
        raise WireError("The request body must be UTF-8 JSON.") from error


# -- text that cannot be encoded ----------------------------------------------------------


def _is_bad(text: str) -> bool:
    if text.isascii():
        return "\x00" in text
    return _BAD_CHAR.search(text) is not None


def _first_bad(value: Any, path: str) -> str | None:
    """The path of the first string (or key) in `value` that cannot be encoded."""
    if isinstance(value, str):
        return path if _is_bad(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            key_text = str(key)
            if _is_bad(key_text):
                return f"{path}.<key>" if path else "<key>"
            found = _first_bad(item, f"{path}.{key_text}" if path else key_text)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _first_bad(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def hostile_text(request: Any) -> GraphQLError | None:
    """A BAD_USER_INPUT error naming the first place in a GraphQL request (`query`,
    `variables`, `operationName`, `extensions`) that holds text which cannot be encoded,
    or None when there is none."""
    if not isinstance(request, dict):
        return None
    where: str | None = None
    query = request.get("query")
    if isinstance(query, str):
        where = _in_document(query)
    if where is None:
        variables = request.get("variables")
        if isinstance(variables, dict):
            found = _first_bad(variables, "")
            where = f"${found}" if found is not None else None
    if where is None:
        for key in ("operationName", "extensions"):
            where = _first_bad(request.get(key), key)
            if where is not None:
                break
    if where is None:
        for key in request:
            if _is_bad(str(key)):
                where = "<key>"
                break
    if where is None:
        return None
    what = "Variable" if where.startswith("$") else "Argument" if "." in where else "Field"
    if where in ("query", "operationName") or where.startswith(("extensions", "<key>")):
        what = "Request parameter"
    return GraphQLError(
        f'{what} "{where}" contains {UNENCODABLE}.',
        extensions={"code": "BAD_USER_INPUT", "field": where},
    )


def _bad_spans(query: str) -> list[tuple[int, int, bool]]:
    """Where `query` has a raw bad character, or an escape that decodes to one (start,
    end, is_escape)."""
    spans: list[tuple[int, int, bool]] = []
    if not query.isascii() or "\x00" in query:
        spans.extend((m.start(), m.end(), False) for m in _BAD_CHAR.finditer(query))
    if "\\u" in query:
        escapes = [
            (m.start(1), m.end(1), int(m.group(2) or m.group(3), 16))
            for m in _ESCAPE.finditer(query)
        ]
        paired: set[int] = set()
        for index, (start, end, point) in enumerate(escapes):
            if index in paired:
                continue
            follower = escapes[index + 1] if index + 1 < len(escapes) else None
            if (
                0xD800 <= point <= 0xDBFF
                and follower is not None
                and follower[0] == end
                and 0xDC00 <= follower[2] <= 0xDFFF
            ):
                paired.add(index + 1)  # a valid pair: one astral character
                continue
            if point == 0 or point > 0x10FFFF or 0xD800 <= point <= 0xDFFF:
                spans.append((start, end, True))
    return sorted(spans)


def _harmless(piece: str) -> str:
    """A replacement for a bad piece of a document, of the same length."""
    if piece.startswith("\\u{"):
        digits = len(piece) - 4
        return "\\u{" + "FFFD".rjust(digits, "0")[-digits:] + "}"
    if piece.startswith("\\u"):
        return "\\uFFFD"
    return "\ufffd"


def _in_document(query: str) -> str | None:
    """Where in the document the first bad text is: `field.argument[.field…]`, `$name` of
    a variable's default, or `query` when it is outside any value (a comment, a name)."""
    if query.isascii() and "\\u" not in query and "\x00" not in query:
        return None  # the common case, at C speed
    spans = _bad_spans(query)
    if not spans:
        return None
    # The same document with every bad piece replaced by a harmless one of equal length,
    # so that the parser's locations still point at the original text.
    pieces: list[str] = []
    last = 0
    for start, end, _ in spans:
        pieces.extend((query[last:start], _harmless(query[start:end])))
        last = end
    pieces.append(query[last:])
    from app.schema import MAX_TOKENS  # the app's own token limit (an import cycle at the top)

    try:
        document = parse("".join(pieces), max_tokens=MAX_TOKENS)
    except GraphQLError:
        return "query"  # the parser refuses it anyway; say why here, where it is known
    literals = [
        (node.loc.start, node.loc.end, path, node.block)
        for path, node in _string_values(document)
        if node.loc is not None
    ]
    for start, _, is_escape in spans:
        inside = next((lit for lit in literals if lit[0] <= start < lit[1]), None)
        if inside is None:
            return "query"  # a comment, or a stray character between tokens
        if is_escape and inside[3]:
            continue  # block strings have no escapes: that `\\u0000` is six characters
        return inside[2]
    return None


def _string_values(document: DocumentNode) -> Iterator[tuple[str, StringValueNode]]:
    """Every string literal in `document`, with the path of the argument it is in."""
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            for variable in definition.variable_definitions or ():
                if variable.default_value is not None:
                    yield from _values(f"${variable.variable.name.value}", variable.default_value)
        selection_set = getattr(definition, "selection_set", None)
        if selection_set is not None:
            yield from _selections(selection_set)


def _selections(selection_set: SelectionSetNode) -> Iterator[tuple[str, StringValueNode]]:
    for selection in selection_set.selections:
        name = selection.name.value if isinstance(selection, FieldNode) else None
        for directive in selection.directives or ():
            for argument in directive.arguments or ():
                yield from _values(f"@{directive.name.value}.{argument.name.value}", argument.value)
        for argument in getattr(selection, "arguments", None) or ():
            yield from _values(f"{name}.{argument.name.value}", argument.value)
        inner = getattr(selection, "selection_set", None)
        if inner is not None:
            yield from _selections(inner)


def _values(path: str, value: ValueNode) -> Iterator[tuple[str, StringValueNode]]:
    if isinstance(value, StringValueNode):
        yield path, value
    elif isinstance(value, ListValueNode):
        for index, item in enumerate(value.values):
            yield from _values(f"{path}[{index}]", item)
    elif isinstance(value, ObjectValueNode):
        for field in value.fields:
            yield from _values(f"{path}.{field.name.value}", field.value)
