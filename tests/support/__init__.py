"""What the tests share, in one place (import from here, never copy):

- `actors`: the cast of callers, one per row of the access table (DESIGN §3);
- `processes`: the real server process and the CLI (`orders-api migrate`, `seed-demo`),
  free ports, starting, waiting until healthy, stopping;
- `servers`: the security stage's production server (fresh secrets, demo data) and a
  caller of it; `stage_server` for one with budgets of its own;
- `carriers`: the warehouse and carrier documents and short-cuts (pack, ship, parcels,
  tracking events, a signed webhook event) that drive an order through fulfilment;
- `returns`: the returns documents and short-cuts (deliver, request, approve, receive) and a
  payment provider whose refunds can fail;
- `subscriptions`: live updates (a graphql-transport-ws stream in-process) and the waits
  until a subscription is registered (the app's broker, or Redis's count of a channel);
- `crowd`: many accounts with sessions (and orders) seeded into a server's database.

Bulk data for the bench and the load test is app/seeding (tests/unit/test_seeding.py).
"""
