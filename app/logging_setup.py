"""JSON logs with request ids. Codes are masked where they are logged; a filter also masks
anything that looks like a full code or an email address, as a second line of defence."""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from datetime import UTC, datetime
from types import TracebackType

_CODE = re.compile(r"\b([0-9A-Za-z]{4})-?([0-9A-Za-z]{4})-?([0-9A-Za-z]{4})-?([0-9A-Za-z]{4})\b")
_EMAIL = re.compile(r"[^@\s\"']+@[^@\s\"']+\.[A-Za-z]{2,}")
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def scrub(text: str) -> str:
    text = _EMAIL.sub("***@***", text)
    return _CODE.sub(lambda m: f"{m.group(1)}-****-****-{m.group(4)}", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = scrub(str(value)) if isinstance(value, str) else value
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
