"""Bulk seeding with SQLAlchemy Core, for the tools that need a database of a given size
and shape without going through the API: `rows` writes the rows (one builder per table,
chunked inserts, sequences moved past explicit ids, planner statistics), `bench` is the
shape of scripts/bench (one customer's order pages), `load` the shape of scripts/loadtest
(many customers with sessions and orders to look up). The tests check both shapes
(tests/unit/test_seeding.py). The demo data (`orders-api seed-demo`, app/demo.py) goes
through the services instead: it is small and must show every rule at work."""
