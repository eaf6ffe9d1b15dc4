from pathlib import Path

import pytest
from pydantic import ValidationError

from topology.settings import Settings, host_port, load_settings


def test_defaults_describe_a_local_stack() -> None:
    s = Settings()
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.triton_grpc_address == "127.0.0.1:8001"
    assert s.topics().uploads.name == "sail.content-uploads"
    assert s.collections()[0].dim == s.embedding_dim
    assert s.limits().max_message_bytes == s.max_message_bytes


def test_environment_overrides_file_and_file_overrides_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "sail.env"
    env_file.write_text("SAIL_TOPIC_PREFIX=fromfile.\nSAIL_TOPIC_PARTITIONS=3\n")
    monkeypatch.setenv("SAIL_TOPIC_PARTITIONS", "9")
    s = load_settings(env_file)
    assert s.topic_prefix == "fromfile."
    assert s.topic_partitions == 9


def test_missing_settings_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_settings(tmp_path / "nope.env")


def test_sasl_without_credentials_is_rejected() -> None:
    with pytest.raises(ValidationError, match="SASL protocols need"):
        Settings(kafka_security_protocol="SASL_SSL")


def test_secrets_never_appear_in_repr_or_dump() -> None:
    s = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="svc",
        kafka_sasl_password="hunter2-secret",
        milvus_token="root:milvus-secret",
    )
    for text in (repr(s), str(s), s.model_dump_json()):
        assert "hunter2-secret" not in text and "milvus-secret" not in text
    assert s.kafka_security().sasl_password is not None
    assert s.kafka_security().sasl_password.get_secret_value() == "hunter2-secret"
    assert s.milvus_token_value == "root:milvus-secret"
    assert Settings().milvus_token_value is None


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(ValidationError):
        s.topic_prefix = "other."  # type: ignore[misc]


@pytest.mark.parametrize(
    ("address", "expected"), [("grpc://h:1", ("h", 1)), ("h:2", ("h", 2)), ("http://127.0.0.1:19530", ("127.0.0.1", 19530))]
)
def test_host_port_parses_urls_and_pairs(address: str, expected: tuple[str, int]) -> None:
    assert host_port(address) == expected


def test_address_without_port_is_rejected() -> None:
    with pytest.raises(ValidationError, match="has no host:port"):
        Settings(triton_url="grpc://somewhere")


def test_milvus_db_file_means_embedded() -> None:
    assert Settings(milvus_uri="./local.db").milvus_embedded
    assert not Settings().milvus_embedded


def test_media_policy_comes_from_comma_separated_settings() -> None:
    from pathlib import Path

    from topology.settings import Settings

    policy = Settings(media_roots="/srv/media, ~/covers", media_allow_hosts="Media.Internal,10.20.0.0/16").media_policy()
    assert policy.roots == (Path("/srv/media"), Path("~/covers").expanduser())
    assert policy.allow_hosts == ("media.internal", "10.20.0.0/16")
    assert Settings().media_policy().roots == () and Settings().media_policy().allow_hosts == ()


def test_a_malformed_allowed_network_is_a_clear_error() -> None:
    import pydantic
    import pytest

    from topology.settings import Settings

    with pytest.raises(pydantic.ValidationError, match="SAIL_MEDIA_ALLOW_HOSTS"):
        Settings(media_allow_hosts="10.0.0.0/33")


def test_event_time_limits_reach_the_codec() -> None:
    from topology.settings import Settings

    limits = Settings(event_max_future_s=60, event_max_age_s=86_400).limits()
    assert (limits.max_future_skew_ms, limits.max_age_ms) == (60_000, 86_400_000)
    assert Settings().limits().max_age_ms == 0


def test_three_local_brokers_list_every_node_and_replicate_topics_three_times(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(kafka_brokers=3)
    assert s.kafka_bootstrap == "127.0.0.1:9092,127.0.0.1:9192,127.0.0.1:9292"  # node i on the port + 100*i
    assert s.topic_replication_factor == 3 and s.topics().uploads.configs()["min.insync.replicas"] == "2"
    assert Settings(kafka_brokers=3, topic_replication_factor=2).topic_replication_factor == 2  # an explicit factor wins
    assert "min.insync.replicas" not in Settings().topics().uploads.configs()  # one broker
    monkeypatch.setenv("SAIL_KAFKA_BROKERS", "3")
    assert load_settings().kafka_bootstrap.count(",") == 2  # the workers see what `stack up --kafka-brokers 3` started
    explicit = Settings(kafka_brokers=2, kafka_bootstrap="127.0.0.1:1,127.0.0.1:5")
    assert explicit.kafka_bootstrap == "127.0.0.1:1,127.0.0.1:5" and explicit.topic_replication_factor == 2
    with pytest.raises(ValidationError, match="SAIL_KAFKA_BROKERS is 3 but SAIL_KAFKA_BOOTSTRAP lists 2 addresses"):
        Settings(kafka_brokers=3, kafka_bootstrap="127.0.0.1:1,127.0.0.1:5")
    with pytest.raises(ValidationError, match="must not be blank"):
        Settings(kafka_group_instance_id=" ")
