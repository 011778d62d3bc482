"""The GraphiQL page served at GET /graphql in development (production serves no IDE).

Strawberry's own template loads React and GraphiQL from a CDN and opens on a generic
welcome text. This one loads the same bundles from `app/static/graphiql/` (vendored,
see LICENSES.txt there: the IDE works offline) and opens on the main customer journey —
login → myOrders → order(code) → orderUpdates — with the headers pane prefilled with
`{"Authorization": "Bearer <paste accessToken here>"}`. Subscriptions go over the same
URL with graphql-transport-ws; GraphiQL sends the headers pane as the connection_init
payload, which is where the API reads WebSocket credentials.
"""

from __future__ import annotations

import json
from pathlib import Path

ASSETS_URL = "/graphiql-assets"
ASSETS_DIR = Path(__file__).parent / "static" / "graphiql"
TOKEN_PLACEHOLDER = "<paste accessToken here>"

DEFAULT_HEADERS = json.dumps({"Authorization": f"Bearer {TOKEN_PLACEHOLDER}"}, indent=2)

DEFAULT_DOCUMENT = """\
# Orders API — the customer journey, step by step.
#
# This document holds several operations: press the run button (or Ctrl-Enter with the
# cursor inside one) and pick the operation to run.
#
# 1. Run `Login` (demo customers: alice@example.com, bob@example.com;
#    password orders-demo-2026) and copy `accessToken` from the result.
# 2. Open the "Headers" tab below and replace <paste accessToken here> with it:
#      {"Authorization": "Bearer eyJhbGciOi..."}
#    The token lives 15 minutes; run `Login` again (or refreshToken) when it expires.
#    Headers are not saved by this page: a reload forgets the token.
# 3. Run `MyOrders`: your order history, newest first. Copy an order `code`.
# 4. Put the code into the "Variables" tab ({"code": "XXXX-XXXX-XXXX-XXXX"}) and run
#    `Order` for the status, shipments and tracking events.
# 5. Run `FollowOrder` to follow the order live (a subscription over WebSocket,
#    graphql-transport-ws; the Authorization header is sent in connection_init).

mutation Login {
  login(email: "alice@example.com", password: "orders-demo-2026") {
    tokens { accessToken refreshToken expiresIn }
    userErrors { field message code }
  }
}

query MyOrders {
  myOrders(first: 10) {
    edges { node { code status placedAt total { amount currency } } }
    pageInfo { hasNextPage endCursor }
  }
}

query Order($code: String!) {
  order(code: $code) {
    code status placedAt estimatedDelivery
    lines { sku name quantity }
    total { amount currency }
    shipments { carrier trackingNumber status events { status location occurredAt } }
  }
}

subscription FollowOrder($code: String!) {
  orderUpdates(code: $code) {
    type
    order { code status shipments { trackingNumber status } }
  }
}
"""

DEFAULT_VARIABLES = json.dumps({"code": "paste an order code from MyOrders"}, indent=2)

# No inline script or style (the page is served under a strict Content-Security-Policy,
# app/console/headers.py): the start-up code is graphiql-start.js, the layout
# graphiql-page.css, and the settings travel in a JSON data block, which is never run.
_TEMPLATE = """<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <title>Orders API · GraphiQL</title>
    <link rel="stylesheet" href="__ASSETS__/graphiql.min.css" />
    <link rel="stylesheet" href="__ASSETS__/graphiql-page.css" />
    <script src="__ASSETS__/react.production.min.js"></script>
    <script src="__ASSETS__/react-dom.production.min.js"></script>
    <script src="__ASSETS__/graphiql.min.js"></script>
    <script type="application/json" id="graphiql-settings">__SETTINGS__</script>
    <script src="__ASSETS__/graphiql-start.js" defer></script>
  </head>
  <body>
    <div id="graphiql">Loading…</div>
  </body>
</html>
"""


def graphiql_html() -> str:
    settings = {
        "query": DEFAULT_DOCUMENT,
        "headers": DEFAULT_HEADERS,
        "variables": DEFAULT_VARIABLES,
        "placeholder": TOKEN_PLACEHOLDER,
    }
    # "<" escaped so that nothing in the settings can close the data block
    settings_js = json.dumps(settings).replace("<", "\\u003c")
    return _TEMPLATE.replace("__ASSETS__", ASSETS_URL).replace("__SETTINGS__", settings_js)
