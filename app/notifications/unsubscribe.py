"""`/unsubscribe?token=…`: the one-click unsubscribe link of every milestone email.

POST (RFC 8058: mail clients send `List-Unsubscribe=One-Click`; the page's own button
too) switches the token's customer's milestone emails off, once, without a login. GET only
shows a small page with that button: mail scanners and link previews GET every link, and
must not unsubscribe anyone. Answers say what happened and nothing about any order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from html import escape
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from app.notifications.preferences import PreferenceService, TokenRefused

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title}</title></head>
<body style="font-family:Arial,Helvetica,sans-serif;max-width:600px;margin:24px auto;\
padding:0 12px;">
<h1 style="font-size:20px;">{title}</h1>
{body}
</body></html>
"""

_REFUSALS = {
    "forged": (400, "This unsubscribe link is not valid. Nothing was changed."),
    "expired": (
        410,
        "This unsubscribe link has expired. Nothing was changed: sign in to your account "
        "to change which emails you get.",
    ),
    "used": (
        409,
        "This unsubscribe link has already been used. Delivery updates by email are off; "
        "sign in to your account to switch them back on.",
    ),
}

_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=escape(title), body=body), status, headers=_HEADERS)


def unsubscribe_endpoint(
    preferences: PreferenceService,
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        token = request.query_params.get("token", "")
        if request.method == "GET":
            action = escape("/unsubscribe?token=" + quote(token, safe="."))
            # No check here: the page says nothing about the token either way.
            return _page(
                "Unsubscribe from delivery updates",
                "<p>Stop the emails about your parcels' progress (out for delivery, delays, "
                "delivery attempts, delivery). Order confirmations, cancellations, refunds and "
                "returns are always sent.</p>"
                f'<form method="post" action="{action}">'
                '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
                '<button type="submit">Unsubscribe</button></form>',
            )
        try:
            await preferences.unsubscribe(token)
        except TokenRefused as refused:
            status, message = _REFUSALS[refused.reason]
            return _page("Unsubscribe", f"<p>{escape(message)}</p>", status)
        return _page(
            "You are unsubscribed",
            "<p>You will no longer get delivery updates by email. Order confirmations, "
            "cancellations, refunds and returns are still sent. You can switch delivery "
            "updates back on in your account.</p>",
        )

    return endpoint
