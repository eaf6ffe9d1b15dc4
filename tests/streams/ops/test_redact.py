from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from streams.ops import redact


@pytest.fixture
def restore_factory() -> Iterator[None]:
    factory = logging.getLogRecordFactory()
    yield
    logging.setLogRecordFactory(factory)


def test_secrets_are_masked_in_every_logger_even_inside_bytes_reprs(
    restore_factory: None, caplog: pytest.LogCaptureFixture
) -> None:
    redact.install(["hunter2-secret", "tok", ""])  # too-short values are ignored, not masked everywhere
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("aiokafka.conn").debug("Request %d: %s", 3, b"sail\x00sail\x00hunter2-secret")
        logging.getLogger("some.lib").warning("token tok is fine to show, hunter2-secret is not")
    assert "hunter2-secret" not in caplog.text
    assert caplog.text.count(redact.MASK) == 2 and "token tok is fine" in caplog.text
