"""Moved to tests/support/returns.py; this name stays only while
tests/security/test_door_matrix.py (being changed by the staff-console work) imports it."""

from tests.support.returns import deliver, request

__all__ = ["deliver", "request"]
