"""Alert rules and the Grafana dashboard may only use metrics the workers export."""

import json
import re
from pathlib import Path

import yaml

from streams.ops import metrics

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
EXPORTED = {
    getattr(metrics, name)
    for name in dir(metrics)
    if name.isupper() and isinstance(getattr(metrics, name), str) and getattr(metrics, name).startswith("sail_")
}
SUFFIXES = ("_bucket", "_sum", "_count", "_total")


def _names(expr: str) -> set[str]:
    found = set()
    for name in re.findall(r"\bsail_[a-z_]+", expr):
        for suffix in SUFFIXES:
            if name.endswith(suffix) and name[: -len(suffix)] in EXPORTED:
                name = name[: -len(suffix)]
        found.add(name)
    return found


def test_alert_rules_cover_the_issue_and_use_exported_metrics() -> None:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"][0]["rules"]
    names = {r["alert"] for r in rules}
    assert {"SailConsumerLagHigh", "SailItemFreshnessSLO", "SailPartitionStalled", "SailDeadLetterRate"} <= names
    for rule in rules:
        assert _names(rule["expr"]) <= EXPORTED, rule["alert"]
        assert rule["annotations"]["summary"]


def test_dashboard_panels_use_exported_metrics() -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= _names(target["expr"])
    assert used <= EXPORTED
    assert {
        metrics.CONSUMER_LAG_SECONDS,
        metrics.ITEM_FRESHNESS_SECONDS,
        metrics.DEAD_LETTERS,
        metrics.TRITON_BATCH_ITEMS,
        metrics.ITEM_VECTORS,
    } <= used


def test_alert_rules_fire_as_intended_under_promtool() -> None:
    """Prometheus's own checker and rule unit tests (promtool from Debian's prometheus package)."""
    import shutil
    import subprocess

    promtool = shutil.which("promtool")
    assert promtool, "promtool is needed (deploy/local/bootstrap.sh installs Debian's prometheus package)"
    check = subprocess.run([promtool, "check", "rules", "alerts.yml"], cwd=MONITORING, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and "SUCCESS: 11 rules found" in check.stdout, check.stdout + check.stderr
    tested = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"], cwd=MONITORING, capture_output=True, text=True, timeout=60
    )
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
