"""`sail-stream produce`: synthetic but realistic traffic for demos, tests and benchmarks.

Creators upload items (titles, tags, OCR and ASR text, author nicknames, generated JPEG covers);
users browse in sessions, preferring a few topics, picking items with Zipf popularity among what
exists, and act: views with a log-normal dwell, likes, shares, comments, follows, skips, dislikes.
The same seed gives the same content (timestamps are the wall clock).
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from streams.sinks.kafka import producer
from topology.batches import UserBatches
from topology.codec import encode_interaction, encode_upload
from topology.messages import Action, ContentUpload, Interaction, Media
from topology.settings import Settings

logger = logging.getLogger(__name__)

TOPICS = {
    "cats": (["kitten chases a laser pointer", "cat sleeps in a box", "funny cat fails", "cat meets cucumber"], (230, 160, 60)),
    "cooking": (
        ["five minute pasta recipe", "how to sharpen a kitchen knife", "street food tour", "perfect fried rice"],
        (200, 60, 40),
    ),
    "football": (
        ["top ten goals of the season", "penalty shootout highlights", "training drills for kids", "derby day vlog"],
        (40, 160, 60),
    ),
    "travel": (
        ["a week in the alps", "cheap flights explained", "night market walk", "hidden beaches of the coast"],
        (60, 120, 220),
    ),
    "music": (
        ["guitar cover of a classic", "drum solo practice", "piano lesson for beginners", "street busker duet"],
        (150, 60, 200),
    ),
    "gaming": (
        ["speedrun world record", "boss fight without damage", "retro console unboxing", "tier list of every weapon"],
        (30, 30, 30),
    ),
}
ACTIONS = [Action.VIEW, Action.LIKE, Action.SHARE, Action.COMMENT, Action.FOLLOW, Action.SKIP, Action.DISLIKE]
ACTION_P = [0.70, 0.12, 0.03, 0.03, 0.02, 0.08, 0.02]


@dataclass(frozen=True, slots=True)
class LoadPlan:
    items_per_s: float = 10.0
    interactions_per_s: float = 100.0
    duration_s: float = 60.0
    users: int = 500
    seed: int = 7
    image_share: float = 0.5
    bad_share: float = 0.0
    zipf_a: float = 1.2
    batch: int = 1  # interactions per record: 1, single events; more, each user's events in batch records


@dataclass(frozen=True, slots=True)
class Produced:
    uploads: int
    interactions: int
    bad: int
    elapsed_s: float


def cover_jpeg(topic: str, variant: int) -> bytes:
    """A small JPEG in the topic's colour with some texture (the SAIL encoder decodes it)."""
    from PIL import Image

    rng = np.random.default_rng(variant)
    base = np.array(TOPICS[topic][1], dtype=np.float32)
    pixels = np.clip(base + rng.normal(0, 25, (64, 64, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=80)
    return buf.getvalue()


class Traffic:
    """The synthetic world: creators, items, users with topic preferences."""

    def __init__(self, plan: LoadPlan, run_id: str) -> None:
        self.plan = plan
        self.run_id = run_id
        self.rng = np.random.default_rng(plan.seed)
        names = list(TOPICS)
        self.covers = {t: [cover_jpeg(t, v) for v in range(4)] for t in names}
        self.items: list[str] = []
        self.item_topics: list[str] = []
        self.user_topics = [list(self.rng.choice(names, size=2, replace=False)) for _ in range(plan.users)]
        self.titles: dict[str, str] = {}
        self.user_items: dict[str, set[str]] = {}
        self.events = 0

    def upload(self, now_ms: int) -> ContentUpload:
        n = len(self.items)
        topic = str(self.rng.choice(list(TOPICS)))
        phrase = str(self.rng.choice(TOPICS[topic][0]))
        creator = int(self.rng.integers(50))
        item_id = f"{self.run_id}-item-{n}"
        cover = None
        if self.rng.random() < self.plan.image_share:
            cover = Media.inline(self.covers[topic][int(self.rng.integers(4))])
        self.items.append(item_id)
        self.item_topics.append(topic)
        self.titles[item_id] = f"{phrase}, episode {n + 1}"  # distinct: the demo lists titles side by side
        return ContentUpload(
            item_id=item_id,
            creator_id=f"creator-{creator}",
            created_at_ms=now_ms,
            title=self.titles[item_id],
            ocr_text=f"{phrase.upper()}. subscribe for more",
            asr_text=f"hi everyone today {phrase}. thanks for watching",
            author_nickname=f"{topic}_creator_{creator}",
            tags=(topic, str(self.rng.choice(["fun", "howto", "daily", "top"]))),
            cover=cover,
        )

    def interaction(self, now_ms: int, visible: int | None = None) -> Interaction | None:
        """A user acting on one of the first `visible` items (default: every item uploaded so far)."""
        seen = len(self.items) if visible is None else min(visible, len(self.items))
        if not seen:
            return None
        user = int(self.rng.integers(self.plan.users))
        likes = self.user_topics[user]
        # Zipf popularity over existing items, biased to the user's topics 70% of the time
        for _ in range(8):
            rank = int(self.rng.zipf(self.plan.zipf_a)) - 1
            index = seen - 1 - (rank % seen)  # newer items are more popular
            if self.item_topics[index] in likes or self.rng.random() < 0.3:
                break
        action = ACTIONS[int(self.rng.choice(len(ACTIONS), p=ACTION_P))]
        if self.item_topics[index] not in likes and action is Action.VIEW and self.rng.random() < 0.5:
            action = Action.SKIP
        self.events += 1
        self.user_items.setdefault(f"user-{user}", set()).add(self.items[index])
        dwell = int(self.rng.lognormal(8.5, 0.8)) if action is Action.VIEW else 0
        return Interaction(
            event_id=f"{self.run_id}-ev-{self.events}",
            user_id=f"user-{user}",
            item_id=self.items[index],
            action=action,
            timestamp_ms=now_ms,
            dwell_ms=dwell,
        )

    def malformed(self) -> bytes:
        kind = int(self.rng.integers(3))
        if kind == 0:
            return b"\xc1\xc1 definitely not msgpack"
        if kind == 1:
            return encode_upload(ContentUpload(item_id="", creator_id="c", created_at_ms=0))[:-3]  # truncated
        return encode_interaction(
            Interaction(event_id="bad", user_id="u", item_id="i", action=Action.LIKE, timestamp_ms=0)
        ).replace(b"like", b"poke")


def run_producer(
    settings: Settings,
    plan: LoadPlan,
    progress: Callable[[str], None] = lambda line: None,
    stop: Callable[[], bool] = lambda: False,
    traffic: Traffic | None = None,
) -> Produced:
    """Produce `plan`'s traffic at its rates for its duration (or until `stop()` is true)."""
    topics = settings.topics()
    p = producer(settings.kafka_bootstrap, settings.kafka_security(), settings.max_message_bytes, linger_ms=5)
    traffic = traffic or Traffic(plan, run_id=f"s{plan.seed}-{int(time.time())}")
    began = time.monotonic()
    uploads = interactions = bad = 0
    batches = UserBatches(plan.batch)
    next_report = began + 10
    try:
        while (elapsed := time.monotonic() - began) < plan.duration_s and not stop():
            now_ms = int(time.time() * 1000)
            while uploads < plan.items_per_s * elapsed:
                upload = traffic.upload(now_ms)
                p.send(topics.uploads.name, key=upload.item_id.encode(), value=encode_upload(upload))
                uploads += 1
            while interactions < plan.interactions_per_s * elapsed:
                event = traffic.interaction(now_ms)
                if event is None:
                    break
                for key, value in batches.add(event, time.monotonic()):
                    p.send(topics.interactions.name, key=key, value=value)
                interactions += 1
            for key, value in batches.due(time.monotonic()):
                p.send(topics.interactions.name, key=key, value=value)
            if plan.bad_share > 0 and bad < plan.bad_share * (uploads + interactions):
                data = traffic.malformed()
                target = topics.uploads.name if bad % 2 == 0 else topics.interactions.name
                p.send(target, key=b"malformed", value=data)
                bad += 1
            if time.monotonic() >= next_report:
                progress(f"produce: {uploads} uploads, {interactions} interactions, {bad} malformed after {elapsed:.0f}s")
                next_report += 10
            time.sleep(0.01)
        for key, value in batches.drain():
            p.send(topics.interactions.name, key=key, value=value)
        p.flush()
    finally:
        p.close()
    return Produced(uploads, interactions, bad, time.monotonic() - began)
