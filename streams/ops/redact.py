"""Keep secrets out of logs: every log record's message has the configured secrets replaced.

Some libraries log what they send at DEBUG; aiokafka, for one, logs the SASL authenticate request
with the password in it. Filtering by logger would miss the next one, so the redaction sits in the
log record factory and covers every logger of the process. Exception tracebacks are formatted later
by the handlers and are not covered; the code that logs them keeps secrets out of exception texts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

MASK = "***"


def install(secrets: Iterable[str]) -> None:
    """From now on, log messages carry `MASK` where any of `secrets` (4+ characters) would appear."""
    values = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
    if not values:
        return
    make = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        message = record.getMessage()
        if any(v in message for v in values):
            for value in values:
                message = message.replace(value, MASK)
            record.msg, record.args = message, None
        return record

    logging.setLogRecordFactory(factory)
