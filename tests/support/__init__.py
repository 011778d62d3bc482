"""What the tests share, in one place (import from here, never copy):

- `actors`: the cast of callers, one per row of the access table (DESIGN §3);
- `processes`: the real server process and the CLI (`orders-api migrate`, `seed-demo`),
  free ports, starting, waiting until healthy, stopping;
- `carriers`: the warehouse and carrier documents and short-cuts (pack, ship, tracking
  events) that drive an order through fulfilment with the real services;
- `returns`: the returns documents and short-cuts (deliver, request, approve, receive) and a
  payment provider whose refunds can fail.
"""
