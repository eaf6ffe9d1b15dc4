"""The main job on a private stack: traffic through workers, progress lines, recall, clean shutdown."""

from pathlib import Path

import pytest

from deploy.cli.demo import Synthetic, run_demo
from deploy.local.stack import Stack
from deploy.traffic import LoadPlan
from tests.support.stack import stack_settings

pytestmark = pytest.mark.integration


def test_demo_processes_all_traffic_shows_progress_and_recall_then_stops_everything(tmp_path: Path) -> None:
    settings = stack_settings(tmp_path / "state", encoder="sail-tiny")
    lines: list[str] = []
    plan = LoadPlan(items_per_s=5, interactions_per_s=40, duration_s=8, users=40, seed=3, bad_share=0.02)
    assert run_demo(settings, Synthetic(plan), workers=1, keep_stack=False, say=lines.append, interval_s=2.0) == 0
    text = "\n".join(lines)
    progress = [line for line in lines if "freshness p50" in line]
    assert progress and "lag uploads 0 interactions 0 waiting 0" in progress[-1]
    assert "all processed: yes" in text
    assert "item-to-item: the freshest item" in text and "user-to-item:" in text
    assert int(progress[-1].split("dead letters")[1]) >= 1  # the malformed share went to the dead-letter topic
    assert all(s.state == "stopped" for s in Stack(settings).status())
