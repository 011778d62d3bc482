"""Persisted queries.

Clients may send a document by its SHA-256 instead of its text, with Apollo's automatic
persisted queries protocol (`"extensions": {"persistedQuery": {"version": 1,
"sha256Hash": "…"}}`): an unknown hash answers `PersistedQueryNotFound`, the client sends
text and hash once, and later requests carry the hash only.

The allow-list (`persisted_queries.json` beside this file) is generated from the example
clients in `examples/` and the staff console's modules in `app/static/console/`
(`orders-api export-persisted-queries`; a test fails when it is out of date). With
`PERSISTED_QUERIES=allowlist` a deployment accepts only those documents, by hash or by
text, over HTTP and WebSocket alike: the check is a validation rule, so no
transport can go around it, and registering new documents is refused.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    ValidationRule,
    parse,
    print_ast,
    validate,
)
from graphql.validation.validate import ValidationAbortedError

from app.errors import DomainError, ErrorCode

ALLOWLIST_PATH = Path(__file__).with_name("persisted_queries.json")
APQ_CACHE_SIZE = 2000  # registered documents kept per process (clients re-register on a miss)
_HASH = re.compile(r"[0-9a-f]{64}")
# JS: `const NAME = \`…\`` template literals without interpolation (`${`) or escapes, the
# way the web example writes its documents (anchored at `=` so that backticks in comments
# cannot pair up the wrong way)
_JS_TEMPLATE = re.compile(r"=\s*`((?:[^`\\$]|\$(?!\{))*)`")
# JS: a module-level `const NAME = \`…\`` (at the start of a line, optionally exported),
# whose `${OTHER}` interpolations name other such constants of the same file: the staff
# console builds its documents from shared selections this way. Escapes are not read
# (a backslash would make the literal's value differ from its source text).
_JS_CONST = re.compile(r"^(?:export\s+)?const\s+([A-Za-z_$][\w$]*)\s*=\s*`([^`\\]*)`", re.M)
_JS_INTERPOLATION = re.compile(r"\$\{([^{}]*)\}")
_JS_NAME = re.compile(r"\s*([A-Za-z_$][\w$]*)\s*")
_OPERATION_START = re.compile(r"^\s*(#[^\n]*\n\s*)*(query|mutation|subscription|\{)")


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class PersistedQueryError(DomainError):
    """A persisted-query request that cannot be served. The messages are Apollo's, which
    its clients recognise (PersistedQueryNotFound makes them resend the text)."""


class PersistedQueries:
    def __init__(self, allowlist: dict[str, str], *, allowlist_only: bool) -> None:
        self.allowlist = dict(allowlist)
        self.allowlist_only = allowlist_only
        self._registered: OrderedDict[str, str] = OrderedDict()

    @classmethod
    def from_file(cls, *, allowlist_only: bool, path: Path = ALLOWLIST_PATH) -> PersistedQueries:
        return cls(load_allowlist(path), allowlist_only=allowlist_only)

    def resolve(self, body: dict[str, Any]) -> Any:
        """The query text of a request body: its `query`, or the document its
        persisted-query hash names. Raises PersistedQueryError."""
        extensions = body.get("extensions")
        persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
        query = body.get("query")
        if persisted is None:
            return query
        if not isinstance(persisted, dict) or persisted.get("version") != 1:
            raise PersistedQueryError("Unsupported persisted query version.")
        digest = persisted.get("sha256Hash")
        if not isinstance(digest, str) or not _HASH.fullmatch(digest):
            raise PersistedQueryError("sha256Hash must be 64 lowercase hex digits.")
        if query is None:
            known = self.allowlist.get(digest) or self._registered.get(digest)
            if known is None:
                raise PersistedQueryError("PersistedQueryNotFound")
            if digest in self._registered:
                self._registered.move_to_end(digest)
            return known
        if not isinstance(query, str) or sha256_hex(query) != digest:
            raise PersistedQueryError("provided sha does not match query")
        if digest not in self.allowlist:
            if self.allowlist_only:
                raise PersistedQueryError(
                    "PersistedQueryNotSupported: only the registered operations are accepted.",
                    code=ErrorCode.FORBIDDEN,
                )
            self._register(digest, query)
        return query

    def _register(self, digest: str, query: str) -> None:
        self._registered[digest] = query
        self._registered.move_to_end(digest)
        while len(self._registered) > APQ_CACHE_SIZE:
            self._registered.popitem(last=False)


def allowlist_rule(allowlist: dict[str, str]) -> type[ValidationRule]:
    """A validation rule that accepts only documents of the allow-list, compared as printed
    ASTs (so formatting and comments do not matter, and any change in meaning does)."""
    allowed = frozenset(print_ast(parse(text)) for text in allowlist.values())

    class AllowListOnly(ValidationRule):
        """Runs first and ends validation at once: an unlisted document gets one FORBIDDEN
        and nothing that the other rules would say about the schema."""

        def enter_document(self, node: DocumentNode, *_: Any) -> None:
            if print_ast(node) not in allowed:
                raise ValidationAbortedError(
                    "Only the registered operations are accepted by this deployment "
                    "(see the persisted queries in the README).",
                    extensions={"code": ErrorCode.FORBIDDEN.value},
                )

    return AllowListOnly


def load_allowlist(path: Path = ALLOWLIST_PATH) -> dict[str, str]:
    entries = json.loads(path.read_text(encoding="utf-8"))
    return {sha256_hex(text): text for text in entries.values()}


# -- generation from examples/ and the console -------------------------------------------


def collect_documents(sources: Sequence[Path], schema: GraphQLSchema) -> dict[str, str]:
    """Every GraphQL operation document under `sources` (the example clients, the console):
    `.graphql` files, string constants in `.py` files and template literals in `.js` files
    (`_js_documents`) that parse as operations and validate against the schema. Keyed by
    SHA-256, sorted."""
    found: dict[str, str] = {}
    for path in _source_files(sources):
        if path.suffix == ".graphql":
            candidates = [path.read_text(encoding="utf-8")]
        elif path.suffix == ".py":
            candidates = _python_strings(path.read_text(encoding="utf-8"))
        elif path.suffix in (".js", ".mjs"):
            candidates = _js_documents(path)
        else:
            continue
        for text in candidates:
            if _is_operation(text, path, schema):
                found[sha256_hex(text)] = text
    return dict(sorted(found.items()))


def _source_files(sources: Sequence[Path]) -> list[Path]:
    """Every file under each source, sorted, but none of the packages the node examples
    install (node_modules: tens of thousands of files that are not example code)."""
    files: list[Path] = []
    for source in sources:
        for directory, subdirectories, names in os.walk(source):
            subdirectories[:] = [name for name in subdirectories if name != "node_modules"]
            files += [Path(directory, name) for name in names]
    return sorted(files)


def export_allowlist(sources: Sequence[Path], schema: GraphQLSchema) -> str:
    return json.dumps(collect_documents(sources, schema), indent=2, sort_keys=True) + "\n"


class _Unresolvable(ValueError):
    """An interpolation that is not `${NAME}` of a module-level template constant."""


def _js_documents(path: Path) -> list[str]:
    """The template literals of a JS file that may be documents: every interpolation-free
    one after an `=`, and every module-level `const` with its `${NAME}`s replaced by those
    constants' values, recursively — what the browser computes, byte for byte. A constant
    that reads like an operation but interpolates anything else cannot be listed: that is
    an error here, not an operation missing from the allow-list at run time."""
    source = path.read_text(encoding="utf-8")
    constants = dict(_JS_CONST.findall(source))
    documents: list[str] = _JS_TEMPLATE.findall(source)
    for name, raw in constants.items():
        if "${" not in raw:
            continue  # found above already
        try:
            documents.append(_resolve(name, constants, ()))
        except _Unresolvable as exc:
            if _OPERATION_START.match(raw):
                raise ValueError(
                    f"{path}: {name} interpolates {exc}, which the allow-list export cannot "
                    "resolve (only ${NAME} of a module-level const NAME = `…` of this file)"
                ) from None
    return documents


def _resolve(name: str, constants: dict[str, str], seen: tuple[str, ...]) -> str:
    if name in seen:
        raise _Unresolvable(f"${{{name}}} (a cycle)")
    raw = constants[name]
    leftover = _JS_INTERPOLATION.sub("", raw)
    if "${" in leftover:
        raise _Unresolvable(leftover[leftover.index("${") :][:40])

    def value(match: re.Match[str]) -> str:
        named = _JS_NAME.fullmatch(match.group(1))
        if named is None or named.group(1) not in constants:
            raise _Unresolvable(match.group(0))
        return _resolve(named.group(1), constants, (*seen, name))

    return _JS_INTERPOLATION.sub(value, raw)


def _python_strings(source: str) -> list[str]:
    return [
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def _is_operation(text: str, path: Path, schema: GraphQLSchema) -> bool:
    """True for a valid operation document; an invalid one in an example is a bug there."""
    if not _OPERATION_START.match(text):
        return False
    try:
        document = parse(text)
    except GraphQLError:
        return False
    if not any(isinstance(d, OperationDefinitionNode) for d in document.definitions):
        return False
    errors = validate(schema, document)
    if errors:
        raise ValueError(f"{path}: an invalid GraphQL document: {errors[0].message}")
    return True
