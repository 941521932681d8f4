"""How the node's processes write their log lines (floor 1): one line each, as text or as JSON,
at a chosen level. `serve --log-format/--log-level` set them, and its answer worker inherits
them through CREDITNODE_LOG_FORMAT and CREDITNODE_LOG_LEVEL.

A record may carry fields (`extra={"fields": {...}}`): JSON puts them beside the message,
text appends them as `key=value`. One such line per exchange (`log_exchange`) is what a log
pipeline counts and searches; it never holds a subject's id (personal data stays in the store).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Mapping

FORMAT_ENV = "CREDITNODE_LOG_FORMAT"
LEVEL_ENV = "CREDITNODE_LOG_LEVEL"
FORMATS = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

EXCHANGES = logging.getLogger("node.exchange")
_TEXT = "%(asctime)s %(levelname)s %(name)s%(process_tag)s %(message)s"


class TextFormatter(logging.Formatter):
    def __init__(self, process_tag: str = "") -> None:
        super().__init__(_TEXT)
        self._tag = process_tag

    def format(self, record: logging.LogRecord) -> str:
        record.process_tag = self._tag
        line = super().format(record)
        fields: Mapping[str, object] | None = getattr(record, "fields", None)
        if fields:
            line += " " + " ".join(f"{k}={_text_value(v)}" for k, v in fields.items())
        return line


class JsonFormatter(logging.Formatter):
    def __init__(self, process_tag: str = "") -> None:
        super().__init__()
        self._process = process_tag.strip("[]") or "serve"

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "process": self._process,
            "message": record.getMessage(),
        }
        fields: Mapping[str, object] | None = getattr(record, "fields", None)
        if fields:
            doc.update(fields)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


def _text_value(value: object) -> str:
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if not text or " " in text or '"' in text else text


def configure(
    level: str | None = None, log_format: str | None = None, *, process_tag: str = ""
) -> None:
    """Send this process's log to stderr: `level` and `log_format` as given, else from the
    environment, else INFO and text. Sets the environment too, for child processes."""
    level = (level or os.environ.get(LEVEL_ENV) or "INFO").upper()
    log_format = (log_format or os.environ.get(FORMAT_ENV) or "text").lower()
    if level not in LEVELS:
        level = "INFO"
    if log_format not in FORMATS:
        log_format = "text"
    os.environ[LEVEL_ENV], os.environ[FORMAT_ENV] = level, log_format
    handler = logging.StreamHandler()
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    handler.setFormatter(formatter(process_tag))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def log_exchange(level: int, **fields: object) -> None:
    """One line for one exchange: `event=exchange` and its fields."""
    EXCHANGES.log(level, "exchange", extra={"fields": {"event": "exchange", **fields}})
