"""schema.graphql stays true, never shows a private name, and the layers stay apart."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from app.schema import schema

ROOT = Path(__file__).resolve().parents[2]
PRIVATE_NAMES = re.compile(
    r"password|hash|digest|internal|\bid\b|userId|orderId|productId|sessionId|"
    r"idempotencyKey\s*:\s*String|requestFingerprint|paymentReference|secret|"
    r"refreshTokenHash|tokenHash",
    re.IGNORECASE,
)
# Arguments that legitimately carry a secret *from* the client.
ALLOWED_INPUT_ARGS = {"password", "refreshToken", "idempotencyKey"}


def test_checked_in_schema_matches_the_code() -> None:
    exported = schema.as_str() + "\n"
    checked_in = (ROOT / "schema.graphql").read_text()
    assert checked_in == exported, (
        "schema.graphql is stale: run `orders-api export-schema -o schema.graphql`"
    )


def test_no_private_name_in_the_schema() -> None:
    sdl = schema.as_str()
    # drop argument lists and descriptions: inputs may *take* a password, types never *show* one
    without_args = re.sub(r"\([^)]*\)", "()", sdl)
    without_docs = re.sub(r'""".*?"""', "", without_args, flags=re.S)
    fields = []
    for line in without_docs.splitlines():
        line = line.strip()
        if ":" in line and not line.startswith(("#", '"')):
            fields.append(line.split(":")[0].strip())
    output_fields = [f for f in fields if f not in ALLOWED_INPUT_ARGS]
    leaked = [f for f in output_fields if PRIVATE_NAMES.search(f)]
    assert leaked == []
    assert not re.search(r"\bID\b", sdl), "no ID-typed field: internal ids never leave"


def test_the_private_name_check_would_catch_a_leak() -> None:
    assert PRIVATE_NAMES.search("passwordHash")
    assert PRIVATE_NAMES.search("id")
    assert PRIVATE_NAMES.search("tokenHash")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


API_FILES = {"types.py", "schema.py", "context.py", "loaders.py"}


def test_only_the_api_layer_imports_strawberry() -> None:
    offenders = []
    for path in (ROOT / "app").rglob("*.py"):
        in_api = path.name in API_FILES or "graphql" in path.parts or path.name == "main.py"
        if not in_api and any(m.split(".")[0] == "strawberry" for m in _imports(path)):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_services_never_import_the_api_layer() -> None:
    offenders = []
    for path in (ROOT / "app").rglob("service.py"):
        for module in _imports(path):
            if module.endswith((".types", ".schema")) or module.startswith("app.graphql"):
                offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offenders == []


def test_resolvers_never_commit() -> None:
    offenders = []
    for path in (ROOT / "app").rglob("*.py"):
        in_api = path.name in {"types.py", "schema.py"} or "graphql" in path.parts
        if in_api and re.search(r"\.commit\(|\.write\(\)", path.read_text()):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
