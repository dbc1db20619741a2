"""Log lines as JSON, one object a line, and ``meterql serve``'s logging set-up.

Standard library only: a record's message becomes ``message`` and the
dict a caller passes as ``extra={"fields": {...}}`` is merged in, so an
access line is one flat object a log pipeline can index without parsing
text. Tracebacks go in ``exception`` (still one line: JSON escapes the
newlines).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["json", "text"]
LogLevel = Literal["debug", "info", "warning", "error"]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, Any] = {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return _ENCODER.encode(entry)


# One encoder for every line: ``json.dumps`` with an argument builds a new
# one per call, a fifth of what formatting an access line cost.
_ENCODER = json.JSONEncoder(default=str)


def logging_config(log_format: LogFormat = "json", level: LogLevel = "info") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn: its loggers and ours on stderr.

    Uvicorn applies it in every worker process. Its own access log is off
    (``meterql serve`` passes ``access_log=False``): ``meterql.web.access``
    writes one richer line per request instead.
    """
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"}
        if log_format == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    )
    handler = {"class": "logging.StreamHandler", "formatter": "main", "stream": "ext://sys.stderr"}
    logger = {"handlers": ["stderr"], "level": level.upper(), "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": formatter},
        "handlers": {"stderr": handler},
        "loggers": {"uvicorn": logger, "meterql": logger},
    }
