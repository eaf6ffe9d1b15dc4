"""The healthy / degraded / failing verdict of the status page, in the spirit of Burrow's lag
evaluation: judge a window of lag samples, not one number. Pure: samples and time are arguments."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from streams.sinks.kafka import PartitionReplicas

Status = Literal["healthy", "degraded", "failing"]


@dataclass(frozen=True, slots=True)
class LagSample:
    """One reading of one partition."""

    at_s: float
    committed: int
    end: int
    seconds_behind: float

    @property
    def behind(self) -> int:
        return max(self.end - self.committed, 0)


@dataclass(frozen=True, slots=True)
class Thresholds:
    lag_seconds_degraded: float = 30.0
    lag_seconds_failing: float = 300.0
    freshness_p99_slo_s: float = 5.0  # Milvus's bounded-staleness window: freshness must beat it
    stall_window_s: float = 30.0  # committed offset still while lag > 0 this long = stalled
    growth_samples: int = 4  # lag rising across this many consecutive samples = growing
    saturated_share: float = 0.9  # the content agent waited for a free in-flight slot this share of the time


@dataclass(frozen=True, slots=True)
class Verdict:
    status: Status
    reasons: tuple[str, ...]


_RANK = {"healthy": 0, "degraded": 1, "failing": 2}


def evaluate(
    history: Mapping[tuple[str, int], Sequence[LagSample]],
    dependencies_up: Mapping[str, bool],
    freshness_p99_s: float | None,
    thresholds: Thresholds = Thresholds(),
    saturation: float | None = None,
    replicas: Sequence[PartitionReplicas] = (),
) -> Verdict:
    """The worst finding over partitions (oldest sample first per partition) and dependencies.
    `saturation`: the share of the recent past the content agent waited for the encoder; `replicas`:
    the replica state of the worker's topics (a partition without a leader fails, one short of
    in-sync replicas degrades: writes go on, but one more broker lost would stop them)."""
    findings: list[tuple[Status, str]] = []
    offline = [p for p in replicas if p.offline]
    short = [p for p in replicas if p.under_replicated and not p.offline]
    if offline:
        findings.append(
            (
                "failing",
                f"{len(offline)} partition(s) without a leader, e.g. {offline[0].topic}[{offline[0].partition}]: "
                "nothing is read or written there until a broker holding them returns",
            )
        )
    if short:
        p = short[0]
        findings.append(
            (
                "degraded",
                f"{len(short)} partition(s) under-replicated, e.g. {p.topic}[{p.partition}] with {len(p.isr)} of "
                f"{len(p.replicas)} replicas in sync: a broker is down or behind",
            )
        )
    for dependency, up in sorted(dependencies_up.items()):
        if not up:
            findings.append(("failing", f"{dependency} is down (calls failing, being retried)"))
    for (topic, partition), samples in sorted(history.items()):
        if not samples:
            continue
        where = f"{topic}[{partition}]"
        last = samples[-1]
        recent = [s for s in samples if s.at_s >= last.at_s - thresholds.stall_window_s]  # the trailing stall window
        covered = last.at_s - samples[0].at_s >= thresholds.stall_window_s
        growth = samples[-thresholds.growth_samples :]
        if covered and last.behind > 0 and all(s.committed == last.committed and s.behind > 0 for s in recent):
            findings.append(
                (
                    "failing",
                    f"{where} stalled: committed offset {last.committed} has not moved for {thresholds.stall_window_s:.0f}s "
                    f"with {last.behind} messages behind",
                )
            )
        elif last.seconds_behind >= thresholds.lag_seconds_failing:
            findings.append(("failing", f"{where} is {last.seconds_behind:.0f}s behind"))
        elif len(growth) >= thresholds.growth_samples and all(b.behind > a.behind for a, b in itertools.pairwise(growth)):
            span = growth[-1].at_s - growth[0].at_s
            findings.append(
                ("degraded", f"{where} lag growing over the last {span:.0f}s ({growth[0].behind} -> {last.behind} messages)")
            )
        elif last.seconds_behind >= thresholds.lag_seconds_degraded:
            findings.append(("degraded", f"{where} is {last.seconds_behind:.0f}s behind"))
    if saturation is not None and saturation >= thresholds.saturated_share:
        findings.append(
            (
                "degraded",
                f"encoder at capacity: the content agent waited for it {saturation:.0%} of the last minute; "
                "uploads queue in Kafka and drain when arrivals fall below capacity",
            )
        )
    if freshness_p99_s is not None and freshness_p99_s > thresholds.freshness_p99_slo_s:
        findings.append(
            ("degraded", f"item freshness p99 {freshness_p99_s:.1f}s is over the {thresholds.freshness_p99_slo_s:.0f}s SLO")
        )
    if not findings:
        return Verdict("healthy", ("all partitions keep up, all dependencies answer",))
    worst = max(findings, key=lambda f: _RANK[f[0]])[0]
    return Verdict(worst, tuple(reason for status, reason in findings if status == worst))
