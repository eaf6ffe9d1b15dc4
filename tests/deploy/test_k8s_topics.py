"""Strimzi KafkaTopics generated from topology/: exactly its topics, partitions, replicas and configs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from deploy.cli import main
from deploy.k8s.topics import kafka_topics, resource_name
from topology.settings import Settings
from topology.topics import COLLAB_TABLE, table_changelog

K8S_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")


def test_every_topic_of_topology_and_the_changelog_become_one_kafka_topic_each_exactly_as_declared() -> None:
    s = Settings(
        state_dir=Path("/tmp"), topic_prefix="prod_Sail.", topic_partitions=12, topic_replication_factor=3, app_id="sail-workers"
    )
    resources = kafka_topics(s, "kafka-main", namespace="recsys")
    declared = {spec.name: spec for spec in s.topics().all()}
    changelogs = {table_changelog("sail-workers"), table_changelog("sail-workers", COLLAB_TABLE)}  # both tables' (Milvus Lite)
    assert {r["spec"]["topicName"] for r in resources} == {*declared, *changelogs}
    for r in resources:
        assert (r["apiVersion"], r["kind"]) == ("kafka.strimzi.io/v1beta2", "KafkaTopic")
        assert r["metadata"]["labels"]["strimzi.io/cluster"] == "kafka-main" and r["metadata"]["namespace"] == "recsys"
        assert K8S_NAME.match(r["metadata"]["name"]), r["metadata"]["name"]
        spec = declared.get(r["spec"]["topicName"])
        if spec is None:  # a changelog: compacted, kept for ever
            assert r["spec"]["config"]["cleanup.policy"] == "compact" and r["spec"]["config"]["retention.ms"] == "-1"
            continue
        assert (r["spec"]["partitions"], r["spec"]["replicas"]) == (spec.partitions, 3)
        assert r["spec"]["config"] == spec.configs() and spec.configs()["min.insync.replicas"] == "2"


def test_one_replica_sets_no_min_insync_and_names_keep_to_kubernetes_rules() -> None:
    (uploads, *_) = kafka_topics(Settings(state_dir=Path("/tmp")), "sail")
    assert "min.insync.replicas" not in uploads["spec"]["config"] and "namespace" not in uploads["metadata"]
    assert resource_name("_Sail__content_uploads.") == "sail-content-uploads"
    with pytest.raises(ValueError, match="no character"):
        resource_name("__")


def test_the_cli_prints_them_as_yaml_documents(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAIL_TOPIC_PARTITIONS", "4")
    assert main(["topology", "export", "--format", "strimzi", "--cluster", "c1"]) == 0
    documents = list(yaml.safe_load_all(capsys.readouterr().out))
    assert len(documents) == 9  # 7 topics, 2 table changelogs
    assert all(d["kind"] == "KafkaTopic" and d["spec"]["partitions"] == 4 for d in documents)


def test_the_cli_writes_the_whole_deployment_into_a_folder(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topology", "export", "--format", "kubernetes"]) == 2  # no --out: said, nothing written
    assert "--out DIR" in capsys.readouterr().err
    out = tmp_path / "k8s"
    assert (
        main(
            ["topology", "export", "--format", "kubernetes", "--out", str(out), "--namespace", "recsys", "--image", "reg/sail:1"]
        )
        == 0
    )
    kustomization = yaml.safe_load((out / "kustomization.yaml").read_text())
    for name in kustomization["resources"]:
        for document in yaml.safe_load_all((out / name).read_text()):
            assert document["kind"] == "Namespace" or document["metadata"]["namespace"] == "recsys"
    workers = list(yaml.safe_load_all((out / "workers.yaml").read_text()))
    (stateful,) = [d for d in workers if d["kind"] == "StatefulSet"]
    assert stateful["spec"]["template"]["spec"]["containers"][0]["image"] == "reg/sail:1"
    assert main(["topology", "export", "--format", "kubernetes", "--out", str(out), "--namespace", "Not_A_Label"]) == 2
