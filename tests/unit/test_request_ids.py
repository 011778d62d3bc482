"""Request ids (app/request_ids.py): 12 hex digits, no repeats, a fresh sequence per process."""

from __future__ import annotations

import os
import re

from app.logging_setup import scrub
from app.request_ids import new_request_id


def test_request_ids_are_twelve_hex_digits_that_log_scrubbing_leaves_be() -> None:
    ids = [new_request_id() for _ in range(20_000)]
    assert all(re.fullmatch(r"[0-9a-f]{12}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert all(scrub(f"request {i} done") == f"request {i} done" for i in ids[:1000])


def test_a_forked_process_does_not_repeat_its_parents_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, then out without running pytest's teardown
        os.write(write, ",".join(new_request_id() for _ in range(50)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split(","))
    parent = {new_request_id() for _ in range(50)}
    assert len(child) == 50
    assert not child & parent
