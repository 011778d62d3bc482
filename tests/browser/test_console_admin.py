"""Staff accounts in Chromium against the real server: the admin creates a picker account
(a taken email is refused next to the field), changes its role, the picker logs in and
works; the admin deactivates it and the picker's very next action is refused — the
console goes back to the login — and the picker cannot log in again."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.console_pages import console
from tests.e2e.conftest import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

PICKER = "pia.picker@example.com"
PICKER_PASSWORD = "pick-and-pack-2026"


def test_an_admin_creates_a_picker_who_works_until_deactivated(
    live_server: LiveServer, browser: Browser, output_dir: Path
) -> None:
    base = live_server.base_url
    admin = console(browser, base)
    admin.open()
    admin.login("admin@example.com")
    page = admin.page
    expect(page.locator("main[data-screen=admin]")).to_be_visible()

    # a taken email: the API's userError next to the email field
    create = page.get_by_role("form", name="Create a staff account")
    create.get_by_label("Email").fill("support@example.com")
    create.get_by_label("Name").fill("Someone Else")
    create.get_by_label("Password (at least 12 characters)").fill(PICKER_PASSWORD)
    create.get_by_role("button", name="Create account").click()
    expect(create.locator(".field-error[data-field=email]")).to_be_visible()

    create.get_by_label("Email").fill(PICKER)
    create.get_by_label("Name").fill("Pia Picker")
    create.get_by_label("Role").select_option("WAREHOUSE")
    create.get_by_role("button", name="Create account").click()
    admin.expect_notice(f"Account {PICKER} (WAREHOUSE) created.")
    row = page.locator(f"table.staff-users tr[data-email='{PICKER}']")
    expect(row).to_contain_text("WAREHOUSE")

    # a role change, and back
    row.get_by_label(f"Role of {PICKER}").select_option("SUPPORT")
    row.get_by_role("button", name="Change role").click()
    admin.expect_notice(f"{PICKER} is now SUPPORT.")
    expect(row.locator("td").nth(2)).to_have_text("SUPPORT")
    row.get_by_label(f"Role of {PICKER}").select_option("WAREHOUSE")
    row.get_by_role("button", name="Change role").click()
    expect(row.locator("td").nth(2)).to_have_text("WAREHOUSE")
    # the admin cannot deactivate themself here (the API refuses it too)
    me = page.locator("table.staff-users tr[data-email='admin@example.com']")
    expect(me.get_by_role("button", name="Deactivate")).to_be_disabled()
    admin.shot(output_dir, "console-admin-staff.png")

    # the picker logs in and works
    picker = console(browser, base)
    picker.open()
    picker.login(PICKER, PICKER_PASSWORD)
    ppage = picker.page
    expect(ppage.locator("main[data-screen=warehouse]")).to_be_visible()
    expect(ppage.locator(".queue tbody tr").first).to_be_visible()
    ppage.locator(".queue tbody tr").first.get_by_role("button", name="Open").click()
    expect(ppage.locator("article.pick")).to_be_visible()

    # the admin deactivates the account
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Deactivate").click()
    admin.expect_notice(f"{PICKER} is deactivated")
    expect(row.locator("td.active")).to_have_text("deactivated")

    # the picker's next action is refused at once: back to the login, told why
    asked = len(picker.operations("fulfillmentQueue"))
    ppage.get_by_role("button", name="Refresh").click()
    login = ppage.get_by_role("form", name="Log in")
    expect(login).to_be_visible()
    expect(login).to_contain_text("Your session has ended")
    assert len(picker.operations("fulfillmentQueue")) == asked + 1
    picker.shot(output_dir, "console-session-ended.png")

    # and the account cannot log in again
    picker.login(PICKER, PICKER_PASSWORD)
    expect(login.locator(".field-error")).to_be_visible()
    expect(ppage.locator("main")).to_have_count(0)


@pytest.mark.server_env(ACCESS_TOKEN_TTL_SECONDS="2")
def test_an_expired_access_token_is_refreshed_once_for_a_screen_that_loads_two_things(
    live_server: LiveServer, browser: Browser
) -> None:
    admin = console(browser, live_server.base_url)
    admin.open("support")
    admin.login("admin@example.com")
    expect(admin.page.get_by_role("form", name="Find by order code")).to_be_visible()
    admin.page.wait_for_timeout(3_000)  # the access token has expired
    # the Admin screen asks for the staff accounts and the audit log at the same time:
    # both are refused, one refresh serves both (spending the refresh token twice would
    # count as reuse of a stolen token and end the session)
    admin.go("Admin")
    expect(admin.page.locator("table.staff-users tbody tr").first).to_be_visible()
    expect(admin.page.locator("table.audit-log tbody tr").first).to_be_visible()
    assert len(admin.operations("refreshToken(")) == 1
    assert admin.page.get_by_role("form", name="Log in").count() == 0
