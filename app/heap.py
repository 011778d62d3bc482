"""The cyclic garbage collector and a server's long-lived heap.

After start-up the process holds some 190,000 objects that live as long as it does (the
schema, the ORM's mappers, compiled SQL, the modules). CPython's oldest-generation
collection walks every one of them, and a page that allocates a few thousand objects per
request sets one off every 80 requests or so: measured in-process on PostgreSQL, the
history page spent about a third of its time in those collections (5.4 ms a request, 3.7 ms
with the start-up heap frozen; `scripts/bench` shows the figures over HTTP). `gc.freeze()`
moves everything alive at that moment to a permanent generation the collector skips;
objects made later are collected as usual. At shutdown the heap is unfrozen, so that a
process that builds several apps (the tests) still frees their cycles.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect once, then exempt every surviving object from later collections; returns
    how many objects are frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def unfreeze_heap() -> None:
    """Hand the frozen objects back to the collector (into the oldest generation)."""
    gc.unfreeze()
