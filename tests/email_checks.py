"""Reading a delivered email as a mail client would, with the standard library only:
`multipart/alternative` with a plain-text and an HTML part, the same facts in both, HTML
that parses cleanly and loads nothing, and the link to the order with the code only in
the URL fragment. Used by the outbox tests, the end-to-end tests and the browser test."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.message import EmailMessage
from html.parser import HTMLParser
from urllib.parse import urlsplit

# Elements without an end tag; every other element must be closed, in order.
VOID = {"meta", "br", "hr", "img", "input", "link", "area", "base", "col", "source", "wbr"}
# Elements or attributes that make a mail client fetch something.
LOADING_TAGS = {"img", "script", "iframe", "object", "embed", "link", "video", "audio", "source"}
LOADING_ATTRIBUTES = {"src", "srcset", "background", "poster", "data", "lowsrc", "dynsrc"}


class StrictHtml(HTMLParser):
    """html.parser, plus what it tolerates silently: unbalanced tags, loads, bad refs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []
        self.links: list[str] = []
        self.loads: list[str] = []
        self.doctype = False

    def handle_decl(self, decl: str) -> None:
        self.doctype = self.doctype or decl.lower() == "doctype html"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in LOADING_TAGS:
            self.loads.append(f"<{tag}>")
        for name, value in attrs:
            if name in LOADING_ATTRIBUTES:
                self.loads.append(f"{tag} {name}={value}")
            if name == "style" and value and re.search(r"url\s*\(|@import|expression\(", value):
                self.loads.append(f"{tag} style={value}")
            if tag == "a" and name == "href" and value:
                self.links.append(value)
        if tag not in VOID:
            self.stack.append(tag)
        if tag == "br":
            self.text.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()
        if tag in {"p", "tr", "li", "h1", "h2", "div", "title"}:
            self.text.append("\n")

    def handle_data(self, data: str) -> None:
        if "style" not in self.stack:
            self.text.append(data)


@dataclass
class ParsedEmail:
    text: str  # the plain-text part, LF line ends
    html: str  # the HTML part's source
    html_text: str  # what the HTML part reads as, whitespace folded
    html_links: list[str] = field(default_factory=list)
    text_links: list[str] = field(default_factory=list)


def fold(text: str) -> str:
    return " ".join(text.split())


def parse_email(message: EmailMessage) -> ParsedEmail:
    """Both parts of `message`, checked for form: fails the test if one is missing, the
    HTML does not parse cleanly or it would load anything."""
    assert message.get_content_type() == "multipart/alternative", message.get_content_type()
    parts = list(message.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    plain = message.get_body(preferencelist=("plain",))
    rich = message.get_body(preferencelist=("html",))
    assert plain is not None and rich is not None
    text = str(plain.get_content()).replace("\r\n", "\n")
    html = str(rich.get_content()).replace("\r\n", "\n")

    parser = StrictHtml()
    parser.feed(html)
    parser.close()
    assert parser.doctype, "the HTML part has no <!doctype html>"
    assert parser.errors == [], parser.errors
    assert parser.stack == [], f"unclosed: {parser.stack}"
    assert parser.loads == [], f"the HTML part would load: {parser.loads}"
    assert not re.search(r"url\s*\(|@import", html, re.IGNORECASE), "CSS that loads"
    assert "<style" not in html.lower(), "styles are inline, not in a <style> block"
    assert "max-width:600px" in html, "one column, at most 600 px wide"
    for link in parser.links:
        assert urlsplit(link).scheme in {"https", "http", "mailto"}, link
    text_links = re.findall(r"(?:https?://)\S+", text)
    return ParsedEmail(text, html, fold("".join(parser.text)), parser.links, text_links)


def assert_same_facts(parsed: ParsedEmail, facts: list[str]) -> None:
    """Every fact (code, item, amount, date...) reads the same in both parts."""
    text = fold(parsed.text)
    for fact in facts:
        assert fold(fact) in text, f"{fact!r} missing from the plain-text part:\n{parsed.text}"
        assert fold(fact) in parsed.html_text, (
            f"{fact!r} missing from the HTML part:\n{parsed.html_text}"
        )


def assert_order_link(parsed: ParsedEmail, shop_url: str, code: str) -> str:
    """The link to the order in both parts: `{shop_url}/orders#<code>`, the code in the
    fragment and nowhere before it (no path, no query: nothing a server would log)."""
    compact = code.replace("-", "")
    found = []
    for links in (parsed.html_links, parsed.text_links):
        to_order = [link for link in links if urlsplit(link).path.endswith("/orders")]
        assert len(to_order) == 1, links
        [link] = to_order
        before, _, fragment = link.partition("#")
        assert before == f"{shop_url}/orders", link
        assert fragment == code, link
        assert code not in before and compact not in before.replace("-", "")
        found.append(link)
    assert found[0] == found[1]
    # Every other link in the email is to the shop or to its support address.
    for link in parsed.html_links:
        assert link in (found[0], shop_url) or link.startswith("mailto:"), link
    return found[0]


def assert_shop_frame(parsed: ParsedEmail, shop_name: str, support_email: str) -> None:
    assert_same_facts(parsed, [shop_name, support_email])
    assert f"mailto:{support_email}" in parsed.html_links
