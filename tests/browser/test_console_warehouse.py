"""The warehouse station in Chromium against the real server: a picker opens an order from
the queue, scans a wrong SKU (shown, nothing sent), packs one unit as a split shipment and
ships it, packs and ships the rest, and prints the packing slip (print media: the code as
text and as a Code 128 barcode drawn in the page)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.console_pages import ConsolePage, console, graphql, orders_of, token_of
from tests.browser.test_console_modules import START_B, STOP
from tests.e2e.conftest import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def scan(station: ConsolePage, sku: str) -> None:
    """A barcode scanner: the SKU's keystrokes, then Enter."""
    field = station.page.get_by_label("Scan SKU")
    field.click()
    station.page.keyboard.type(sku)
    station.page.keyboard.press("Enter")


def test_a_picker_scans_packs_a_split_shipment_ships_and_prints(
    live_server: LiveServer, browser: Browser, output_dir: Path
) -> None:
    base = live_server.base_url
    order = next(
        o
        for o in orders_of(base, "bob@example.com")
        if o["status"] == "PLACED" and o["lines"] == [{"sku": "TEE-WHT-L", "quantity": 2}]
    )
    code = order["code"]
    station = console(browser, base)
    station.open()
    station.login("warehouse@example.com")
    page = station.page

    # the queue, then the pick list sorted by bin
    row = page.locator(f".queue tr[data-code='{code}']")
    expect(row).to_be_visible()
    station.shot(output_dir, "console-warehouse-queue.png")
    row.get_by_role("button", name="Open").click()
    pick = page.locator(f"article.pick[data-code='{code}']")
    expect(pick).to_be_visible()
    bins = pick.locator("table.pick-list td.bin").all_inner_texts()
    assert bins == sorted(bins) and bins
    expect(page.locator(".tally-summary")).to_have_text("Scanned 0 of 2 units still to pack.")

    # a wrong item: a clear mismatch, nothing sent
    scan(station, "PEN-GEL-3")
    mismatch = page.locator(".scan-status .mismatch")
    expect(mismatch).to_be_visible()
    expect(mismatch).to_contain_text("Wrong item: PEN-GEL-3 is not on this order")
    expect(page.locator(".tally-summary")).to_have_text("Scanned 0 of 2 units still to pack.")
    expect(page.get_by_role("button", name="Pack all")).to_be_disabled()
    assert station.operations("packOrder") == []
    station.shot(output_dir, "console-warehouse-mismatch.png")
    # a picker reads the codes off the queue: each stays whole in view beside the pick list
    # (the queue once overflowed its column and, scrolled, showed only the codes' last group)
    card = page.locator(".queue").bounding_box()
    assert card is not None
    for cell in page.locator(".queue td.code").all():
        box = cell.bounding_box()
        assert box is not None
        assert card["x"] <= box["x"] and box["x"] + box["width"] <= card["x"] + card["width"]
    assert page.locator(".queue").evaluate(
        "q => q.scrollLeft === 0 && q.scrollWidth <= q.clientWidth"
    )

    # one right unit: packed on its own (a split shipment) and shipped
    scan(station, "TEE-WHT-L")
    expect(page.locator(".scan-status .match")).to_contain_text("TEE-WHT-L · 1 of 2")
    expect(page.get_by_role("button", name="Pack all")).to_be_disabled()
    page.get_by_role("button", name="Pack scanned only (split shipment)").click()
    station.expect_notice(f"Packed {code} (split shipment)")
    packed = station.operations("packOrder")
    assert len(packed) == 1
    assert packed[0]["variables"]["scannedSkus"] == ["TEE-WHT-L"]
    assert packed[0]["variables"]["lines"] == [{"sku": "TEE-WHT-L", "quantity": 1}]
    ship = page.get_by_role("form", name="Ship")
    ship.get_by_label("Carrier").select_option("DHL")
    ship.get_by_label("Tracking number").fill("JJD000111")
    ship.get_by_role("button", name="Ship").click()
    station.expect_notice(f"Shipped {code} with DHL JJD000111")
    expect(pick.locator(".status")).to_have_text("PARTIALLY_SHIPPED")

    # the second unit: the tally matches, Pack all, ship with another carrier
    expect(page.locator(".tally-summary")).to_have_text("Scanned 0 of 1 units still to pack.")
    scan(station, "TEE-WHT-L")
    scan(station, "TEE-WHT-L")  # one too many: shown, not counted
    expect(page.locator(".scan-status .mismatch")).to_contain_text("Too many")
    page.get_by_role("button", name="Pack all").click()
    station.expect_notice(f"Packed {code}.")
    assert station.operations("packOrder")[-1]["variables"]["scannedSkus"] == ["TEE-WHT-L"]
    assert station.operations("packOrder")[-1]["variables"]["lines"] is None
    ship.get_by_label("Carrier").select_option("UPS")
    ship.get_by_label("Tracking number").fill("1Z999AA10123456784")
    ship.get_by_role("button", name="Ship").click()
    station.expect_notice("with UPS 1Z999AA10123456784")
    expect(pick.locator(".status")).to_have_text("SHIPPED")
    station.shot(output_dir, "console-warehouse-shipped.png")

    # and the API agrees: two parcels
    parcels = graphql(
        base,
        "query($c: String!) { order(code: $c) { shipments { carrier trackingNumber } } }",
        token_of(base, "bob@example.com"),
        c=code,
    )["data"]["order"]["shipments"]
    assert [p["carrier"] for p in parcels] == ["DHL", "UPS"]

    # the packing slip, printed: only the slip, with the code as text and as a barcode
    page.set_viewport_size({"width": 794, "height": 1123})  # A4 at 96 dpi
    page.emulate_media(media="print")
    slip = page.locator(".slip")
    expect(slip).to_be_visible()
    expect(page.locator("header.topbar")).to_be_hidden()
    expect(pick).to_be_hidden()
    expect(slip.locator(".code")).to_have_text(code)
    expect(slip.locator("address")).to_contain_text("Bob")
    expect(slip.locator("table.slip-lines")).to_contain_text("TEE-WHT-L")
    barcode = slip.locator("svg.barcode")
    expect(barcode).to_be_visible()
    box = barcode.bounding_box()
    assert box is not None and box["width"] > 200 and box["height"] > 40
    modules = barcode.get_attribute("data-modules") or ""
    assert modules.startswith(START_B) and modules.endswith(STOP)
    bars = len(re.findall("1+", modules))
    assert barcode.locator("rect").count() == bars + 1  # the white background
    drawn = page.evaluate("c => import('/console/code128.js').then(m => m.modules(c))", code)
    assert drawn == modules
    station.shot(output_dir, "console-packing-slip.png")
    page.pdf(path=str(output_dir / "console-packing-slip.pdf"))
