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


def test_a_three_node_cluster_is_one_quorum_with_three_replicas_and_two_in_sync(tmp_path: Path) -> None:
    voters = [(1, 19093), (2, 19193), (3, 19293)]
    props = dict(
        line.split("=", 1)
        for line in server_properties(tmp_path, "127.0.0.1", 19192, 19193, 9_000_000, node_id=2, voters=voters).splitlines()
        if line
    )
    assert (
        props["node.id"] == "2" and props["controller.quorum.voters"] == "1@127.0.0.1:19093,2@127.0.0.1:19193,3@127.0.0.1:19293"
    )
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19192,CONTROLLER://127.0.0.1:19193"
    for key in ("default.replication.factor", "offsets.topic.replication.factor", "transaction.state.log.replication.factor"):
        assert props[key] == "3"
    assert props["min.insync.replicas"] == props["transaction.state.log.min.isr"] == "2"
    single = dict(
        line.split("=", 1) for line in server_properties(tmp_path, "127.0.0.1", 19092, 19093, 9_000_000).splitlines() if line
    )
    assert single["offsets.topic.replication.factor"] == single["min.insync.replicas"] == "1"  # one broker: nothing to wait for


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
