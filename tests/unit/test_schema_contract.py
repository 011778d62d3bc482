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


def _is_api(path: Path) -> bool:
    return path.stem in {p.removesuffix(".py") for p in API_FILES} or "graphql" in path.parts


def test_services_never_import_the_api_layer() -> None:
    """Services and their use-case modules (every module of a domain that is not its API
    layer), not only the files named service.py."""
    offenders = []
    for path in (ROOT / "app").rglob("*.py"):
        parts = path.relative_to(ROOT / "app").parts
        if len(parts) < 2 or parts[0] not in DOMAINS or _is_api(path):
            continue
        for module in _imports(path):
            if not module.startswith("app."):
                continue
            if module.endswith((".types", ".schema", ".loaders")) or module.startswith(
                "app.graphql"
            ):
                offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offenders == []


# The business domains (packages of app/). Another domain may import of one only its public
# modules: the package itself (`app/<domain>/__init__.py`: the helpers it exports), its tables
# (`models`: the schema is shared), its service (`service`: the façade over its use-case
# modules), and the few modules named below that are services in their own right. Everything
# else in a domain (use-case modules, queries, rules) is internal and may change without
# telling anyone. The API layer (types/schema/loaders) and the composition root are outside
# this rule: they wire the domains together.
DOMAINS = {
    "accounts",
    "audit",
    "catalog",
    "notifications",
    "orders",
    "payments",
    "returns",
    "shipments",
    "support",
    "tracking",
    "seeding",
    "console",
}
PUBLIC = {"__init__", "models", "service"}
ALSO_PUBLIC = {
    # the toolkit every domain queues its emails with
    "notifications": {"templates", "outbox", "preferences"},
    # the money: the provider and the refunds ledger are services of their own
    "payments": {"provider", "refunds"},
    # pricing is pure (seeding prices orders as the shop does); placement is the reconciler's
    "orders": {"pricing", "placement"},
}


def _imported_modules(path: Path) -> set[str]:
    """Modules `path` imports, `from app.x import y` counted as app.x.y when y is a module."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            package = ROOT / Path(*node.module.split("."))
            for alias in node.names:
                if (package / f"{alias.name}.py").exists():
                    found.add(f"{node.module}.{alias.name}")
    return found


def _internal_imports(path: Path, modules: set[str]) -> list[str]:
    """Which of `modules` (imported by `path`) are another domain's internals."""
    parts = path.relative_to(ROOT / "app").parts
    if len(parts) < 2 or parts[0] not in DOMAINS or _is_api(path):
        return []
    home = parts[0]
    offenders = []
    for module in sorted(modules):
        names = module.split(".")
        if len(names) < 3 or names[0] != "app" or names[1] not in DOMAINS or names[1] == home:
            continue
        if names[2] not in PUBLIC | ALSO_PUBLIC.get(names[1], set()):
            offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    return offenders


def test_no_domain_imports_another_domains_internals() -> None:
    offenders = [
        offender
        for path in (ROOT / "app").rglob("*.py")
        for offender in _internal_imports(path, _imported_modules(path))
    ]
    assert offenders == []


def test_the_layering_check_would_catch_a_reach_into_internals() -> None:
    """The check itself: a shipments module importing a returns use-case module fails; the
    same helper through the returns package, its tables or its service does not."""
    module = ROOT / "app" / "shipments" / "pack.py"
    imports = {"app.returns.request", "app.returns", "app.returns.models", "app.returns.service"}
    assert _internal_imports(module, imports) == [
        "app/shipments/pack.py imports app.returns.request"
    ]


def test_resolvers_never_commit() -> None:
    offenders = []
    for path in (ROOT / "app").rglob("*.py"):
        in_api = path.name in {"types.py", "schema.py"} or "graphql" in path.parts
        if in_api and re.search(r"\.commit\(|\.write\(\)", path.read_text()):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
