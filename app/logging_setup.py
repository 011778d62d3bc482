"""JSON logs with request ids. Codes are masked where they are logged; a filter also masks
anything that looks like a full code or an email address, as a second line of defence.

A log line that concerns a user carries it as `user`, and always masked the same way: log
the user's public id (`extra={"user": viewer.public_id}`) and the formatter writes
`mask_user()` of it. Lines are plain JSON: no ANSI escapes (uvicorn's `color_message`
extra is dropped, escapes in a message are removed)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
import traceback
from datetime import UTC, datetime
from types import TracebackType

_CODE = re.compile(r"\b([0-9A-Za-z]{4})-?([0-9A-Za-z]{4})-?([0-9A-Za-z]{4})-?([0-9A-Za-z]{4})\b")
_EMAIL = re.compile(r"[^@\s\"']+@[^@\s\"']+\.[A-Za-z]{2,}")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
# Extras never written: uvicorn's copy of its message with terminal colours.
_DROPPED = {"color_message"}
USER_FIELD = "user"


def scrub(text: str) -> str:
    text = _EMAIL.sub("***@***", text)
    return _CODE.sub(lambda m: f"{m.group(1)}-****-****-{m.group(4)}", text)


def mask_user(public_id: str | None) -> str | None:
    """How a user appears in every log line: `u-` and 8 hex digits of a digest of the
    public id. Stable (a user's lines can be followed, and whoever knows a public id can
    find its lines), but the id itself (the handle of the account) is not in the logs."""
    if not public_id:
        return None
    return "u-" + hashlib.blake2b(public_id.encode(), digest_size=4).hexdigest()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(_ANSI.sub("", record.getMessage())),
        }
        for key, value in vars(record).items():
            if key in _STANDARD or key in _DROPPED or key.startswith("_"):
                continue
            if key == USER_FIELD:
                data[key] = mask_user(value) if isinstance(value, str) else None
            else:
                data[key] = scrub(_ANSI.sub("", value)) if isinstance(value, str) else value
        if record.exc_info and record.exc_info[0] is not None:
            data["exc_type"] = record.exc_info[0].__name__
            data["stack"] = _frames(record.exc_info[2])
        return json.dumps(data, default=str)


def _frames(tb: TracebackType | None) -> list[str]:
    """Where it failed, without the exception's message: messages of database errors carry
    statement parameters (addresses, emails, codes) and must never reach a log."""
    return [
        f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in traceback.extract_tb(tb)
    ]


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # One access line per request comes from app/access_log.py (masked, with the request
    # id and the operation); uvicorn's own would be a second, unmasked one.
    logging.getLogger("uvicorn.access").disabled = True
