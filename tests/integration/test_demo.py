"""The placeholder demo walks the real path end to end on a private stack and cleans up."""

from pathlib import Path

import pytest

from deploy.local.stack import Stack
from streams.demo import run_demo
from tests.integration.conftest import stack_settings

pytestmark = pytest.mark.integration


def test_demo_moves_uploads_through_kafka_triton_and_milvus_then_stops_the_stack(tmp_path: Path) -> None:
    settings = stack_settings(tmp_path / "state")
    lines: list[str] = []
    assert run_demo(settings, count=24, seed=3, keep_stack=False, say=lines.append) == 0
    text = "\n".join(lines)
    assert "consumed 24 of 24 back from Kafka (0 undecodable)" in text
    assert "encoded 24 items through Triton and upserted them into Milvus" in text
    recall = lines[lines.index(next(line for line in lines if line.startswith("recall"))) + 1]
    assert recall.split()[0] == "1.000"  # the queried item finds itself first: read-your-writes
    assert all(s.state == "stopped" for s in Stack(settings).status())
