from pathlib import Path

from deploy.local.kafka import new_cluster_id, server_properties


def test_broker_listens_on_loopback_only_and_never_auto_creates_topics(tmp_path: Path) -> None:
    props = dict(
        line.split("=", 1) for line in server_properties(tmp_path, "127.0.0.1", 19092, 19093, 9_000_000).splitlines() if line
    )
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["process.roles"] == "broker,controller"  # KRaft, no ZooKeeper
    assert props["auto.create.topics.enable"] == "false"
    assert props["message.max.bytes"] == "9000000"
    assert props["log.dirs"] == str(tmp_path)


def test_cluster_ids_look_like_kafkas() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


def test_missing_java_or_maven_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    import pytest

    from deploy.local.kafka import ToolMissing, require_java, resolve_jars

    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    with pytest.raises(ToolMissing, match="apt-get install openjdk-17-jre-headless"):
        require_java()
    with pytest.raises(ToolMissing, match="apt-get install maven"):
        resolve_jars("4.4.0", tmp_path / "cache", progress=lambda line: None)
