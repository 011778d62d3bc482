"""The console's ES modules, run in node (no browser needed): every GraphQL document the
console sends is valid against the schema (so a renamed field breaks this test, not a
shift) and is, byte for byte, a document of the persisted-query allow-list (so the console
works under PERSISTED_QUERIES=allowlist), and the Code 128 encoder of the packing slip
matches the standard's reference patterns, check symbol included."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from graphql import parse, validate

from app.console.routes import CONSOLE_DIR
from app.graphql.persisted import collect_documents, load_allowlist
from app.schema import schema
from tests.conftest import service_unreachable

SCREENS = ["api", "support", "warehouse", "returns", "admin"]
# A call that sends a document: gql(…) and api.js's post(…); its first argument
SENDS = re.compile(r"\b(?:gql|post)\(\s*([^,)]*)")
NODE_TIMEOUT = 30.0

# From the Code 128 symbol table (ISO/IEC 15417), written as modules (1 bar, 0 space):
# an independent transcription of what code128.js holds as bar/space widths.
START_B = "11010010000"  # value 104
STOP = "1100011101011"  # value 106, with its final bar
REFERENCE = {
    0: "11011001100",  # space
    13: "10011011100",  # "-"
    16: "10011101100",  # "0"
    17: "10011100110",  # "1"
    33: "10100011000",  # "A"
    34: "10001011000",  # "B"
    55: "11101000110",  # "W"
}


def node_json(script: str) -> object:
    executable = shutil.which("node")
    if executable is None:
        service_unreachable("node", "not installed (apt-get install nodejs)")
    assert executable is not None
    done = subprocess.run(
        [executable, "--input-type=module", "-e", script],
        cwd=CONSOLE_DIR,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def module_url(name: str) -> str:
    return (CONSOLE_DIR / f"{name}.js").as_uri()


def encode(text: str) -> dict[str, object]:
    script = (
        f"import {{ modules, symbols }} from {json.dumps(module_url('code128'))};"
        f"const t = {json.dumps(text)};"
        "console.log(JSON.stringify({ modules: modules(t), symbols: symbols(t) }));"
    )
    result = node_json(script)
    assert isinstance(result, dict)
    return result


@pytest.mark.parametrize("screen", SCREENS)
def test_every_document_the_console_sends_is_valid_against_the_schema(screen: str) -> None:
    script = (
        f"const m = await import({json.dumps(module_url(screen))});"
        "console.log(JSON.stringify(m.DOCUMENTS));"
    )
    documents = node_json(script)
    assert isinstance(documents, dict) and documents
    for name, text in documents.items():
        errors = validate(schema._schema, parse(text))
        assert errors == [], f"{screen}.{name}: {[e.message for e in errors]}"


def console_documents() -> dict[str, str]:
    """Every module's DOCUMENTS, as node evaluates them: `screen.NAME` → text."""
    imports = ",".join(
        f"{json.dumps(screen)}: (await import({json.dumps(module_url(screen))})).DOCUMENTS"
        for screen in SCREENS
    )
    by_screen = node_json(f"console.log(JSON.stringify({{{imports}}}));")
    assert isinstance(by_screen, dict)
    return {
        f"{screen}.{name}": text
        for screen, documents in by_screen.items()
        for name, text in documents.items()
    }


def test_every_document_the_console_sends_is_in_the_allowlist_byte_for_byte() -> None:
    """What the browser computes from the template literals is what the export resolved
    and what persisted_queries.json holds, so PERSISTED_QUERIES=allowlist accepts it (by
    text, or by the same SHA-256); and the export finds no operation the modules do not
    list in DOCUMENTS (the set this test and the schema test check)."""
    sent = console_documents()
    allowlist = set(load_allowlist().values())
    missing = sorted(name for name, text in sent.items() if text not in allowlist)
    assert missing == [], "run: orders-api export-persisted-queries -o " + (
        f"app/graphql/persisted_queries.json (not listed: {missing})"
    )
    exported = set(collect_documents([CONSOLE_DIR], schema._schema).values())
    assert exported == set(sent.values())
    assert len(exported) == len(sent) == 22


def test_documents_are_sent_only_through_the_listed_constants() -> None:
    """No inline document: each gql()/post() gets a document constant (every one of which
    the test above finds in DOCUMENTS), or `query`, the parameter of a helper that is
    handed one of those constants."""
    arguments = {
        f"{path.name}: {argument.strip()}"
        for path in sorted(CONSOLE_DIR.glob("*.js"))
        for argument in SENDS.findall(path.read_text(encoding="utf-8"))
    }
    constant = re.compile(r"[a-z-]+\.js: ([A-Z][A-Z_]*|query)")
    assert arguments and all(constant.fullmatch(a) for a in arguments), sorted(arguments)
    helpers = re.compile(r"(?<!function )\b(?:run|act)\(form, ([A-Za-z_]+)")
    handed = {
        name for path in CONSOLE_DIR.glob("*.js") for name in helpers.findall(path.read_text())
    }
    assert handed and all(name.isupper() for name in handed), handed


def test_a_single_letter_is_start_b_data_check_and_stop() -> None:
    encoded = encode("A")
    # check symbol: (104 + 33·1) mod 103 = 34 ("B")
    assert encoded["symbols"] == [104, 33, 34, 106]
    assert encoded["modules"] == START_B + REFERENCE[33] + REFERENCE[34] + STOP


def test_the_check_symbol_weights_each_value_by_its_position() -> None:
    # "PJJ123C": 104 + 48·1 + 42·2 + 42·3 + 17·4 + 18·5 + 19·6 + 35·7 = 879;
    # 879 mod 103 = 55 ("W")
    encoded = encode("PJJ123C")
    assert encoded["symbols"] == [104, 48, 42, 42, 17, 18, 19, 35, 55, 106]
    bits = str(encoded["modules"])
    assert bits.startswith(START_B) and bits.endswith(REFERENCE[55] + STOP)


def test_an_order_code_with_dashes_and_a_space() -> None:
    encoded = encode("A0-1 ")
    # 104 + 33·1 + 16·2 + 13·3 + 17·4 + 0·5 = 276; 276 mod 103 = 70
    assert encoded["symbols"] == [104, 33, 16, 13, 17, 0, 70, 106]
    expected = START_B + "".join(REFERENCE[v] for v in (33, 16, 13, 17, 0))
    assert str(encoded["modules"]).startswith(expected)
    assert len(str(encoded["modules"])) == 11 * 7 + 13


def test_text_outside_code_set_b_is_refused() -> None:
    script = (
        f"import {{ modules }} from {json.dumps(module_url('code128'))};"
        "try { modules('é'); console.log('null'); }"
        " catch (e) { console.log(JSON.stringify(e.name)); }"
    )
    assert node_json(script) == "RangeError"


def test_the_console_files_load_nothing_from_elsewhere() -> None:
    for path in Path(CONSOLE_DIR).iterdir():
        text = path.read_text()
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", ""), path.name
        assert "https://" not in text, path.name
    html = (CONSOLE_DIR / "index.html").read_text()
    assert "<style" not in html and "<script>" not in html


def test_top_level_errors_are_worded_for_a_shift_worker() -> None:
    script = (
        f"import {{ explain }} from {json.dumps(module_url('api'))};"
        "const said = (code, extensions) => explain({ code, message: 'raw', extensions });"
        "console.log(JSON.stringify({"
        " forbidden: said('FORBIDDEN'),"
        " limited: said('RATE_LIMITED', { retryAfter: 42 }),"
        " unavailable: said('SERVICE_UNAVAILABLE'),"
        " ended: said('UNAUTHENTICATED'),"
        " unknown: said('INTERNAL'),"
        "}));"
    )
    said = node_json(script)
    assert isinstance(said, dict)
    assert said["forbidden"].startswith("Your account is not allowed to do this.")
    assert said["limited"] == "Too many lookups for now. Wait 42 seconds, then try again."
    assert said["unavailable"].startswith("The system is not available right now.")
    assert said["ended"] == "Your session has ended. Please log in again."
    assert "INTERNAL" in said["unknown"] and "raw" not in said["unknown"]
