"""`sail-stream demo`: the main job on local defaults.

Until the streaming agents land (issue 4), the demo walks the real data path once, in the open:
stack up -> synthetic uploads through Kafka with the topology codec -> vectors through Triton ->
upsert into Milvus -> a similarity query at read-your-writes consistency -> stack down.
The item vectors here come from a feature-hashing placeholder normalised by Triton's probe model,
not from the SAIL encoder (issue 3); the output says so.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from deploy.local.stack import Stack
from encoders.client import EncoderClient
from streams.broker import consumer, producer
from streams.sink import MilvusSink
from topology.codec import BadInput, decode_upload, encode_upload
from topology.collections import VECTOR_FIELD
from topology.messages import ContentUpload
from topology.settings import Settings

TOPICS = ["cats", "cooking", "football", "travel", "music", "gaming"]
PHRASES = {
    "cats": ["kitten chases a laser pointer", "cat sleeps in a box", "funny cat fails"],
    "cooking": ["five minute pasta recipe", "how to sharpen a kitchen knife", "street food tour"],
    "football": ["top ten goals of the season", "penalty shootout highlights", "training drills for kids"],
    "travel": ["a week in the alps", "cheap flights explained", "night market walk"],
    "music": ["guitar cover of a classic", "drum solo practice", "piano lesson for beginners"],
    "gaming": ["speedrun world record", "boss fight without damage", "retro console unboxing"],
}


def placeholder_vector(text: str, dim: int) -> NDArray[np.float32]:
    """Feature hashing of word tokens, shape (dim,): a stand-in until the SAIL encoder is served."""
    vec = np.zeros(dim, dtype=np.float32)
    for token in text.lower().split():
        digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "little") % dim
        vec[index] += 1.0 if digest[4] & 1 else -1.0
    return vec


def synthetic_uploads(count: int, seed: int, now_ms: int) -> list[ContentUpload]:
    rng = np.random.default_rng(seed)
    uploads = []
    for i in range(count):
        topic = TOPICS[int(rng.integers(len(TOPICS)))]
        phrase = PHRASES[topic][int(rng.integers(3))]
        uploads.append(
            ContentUpload(
                item_id=f"demo-{seed}-{i}", creator_id=f"creator-{int(rng.integers(20))}", created_at_ms=now_ms + i,
                title=f"{phrase} #{i}", tags=(topic,), author_nickname=f"{topic}fan",
            )
        )  # fmt: skip
    return uploads


async def _encode_and_store(settings: Settings, uploads: list[ContentUpload], say: Callable[[str], None]) -> None:
    encoder = EncoderClient(settings.triton_grpc_address, settings.triton_timeout_s)
    token = settings.milvus_token.get_secret_value() if settings.milvus_token else None
    sink = MilvusSink(settings.milvus_uri, token, settings.milvus_backend)
    await encoder.start()
    await sink.start()
    items, _ = settings.collections()
    try:
        began = time.monotonic()
        raw = np.stack([placeholder_vector(f"{u.title} {' '.join(u.tags)}", settings.embedding_dim) for u in uploads])
        vectors = await encoder.normalise(raw)  # (n, dim), unit rows, computed by tritonserver
        encoded_at = int(time.time() * 1000)
        rows = [
            {"item_id": u.item_id, "creator_id": u.creator_id, "created_at_ms": u.created_at_ms, "encoded_at_ms": encoded_at,
             "model_version": "placeholder-hashing-v0", VECTOR_FIELD: v.tolist()}
            for u, v in zip(uploads, vectors)
        ]  # fmt: skip
        await sink.upsert(items.name, rows)
        say(f"encoded {len(rows)} items through Triton and upserted them into Milvus in {time.monotonic() - began:.2f}s")
        query = uploads[0]
        hits = await sink.search(items.name, vectors[:1], limit=4, vector_field=VECTOR_FIELD, consistency="Strong")
        titles = {u.item_id: u.title for u in uploads}
        say(f"recall (read-your-writes) for {query.item_id} {query.title!r}:")
        for hit in hits[0]:
            say(f"  {hit.score:6.3f}  {hit.id:<14} {titles.get(hit.id, '')!r}")
        freshness = [(encoded_at - u.created_at_ms) / 1000 for u in uploads]
        say(f"upload -> upsert freshness: p50 {np.percentile(freshness, 50):.2f}s, max {max(freshness):.2f}s")
    finally:
        await sink.close()
        await encoder.close()


def run_demo(settings: Settings, count: int, seed: int, keep_stack: bool, say: Callable[[str], None]) -> int:
    """Bring the stack up, push `count` uploads through the real path, show recall, and clean up."""
    say("sail-stream demo (placeholder until the streaming agents land): stack -> Kafka -> Triton -> Milvus")
    stack = Stack(settings, progress=lambda line: say(f"  {line}"))
    received: list[ContentUpload] = []
    try:
        began = time.monotonic()
        stack.up()
        say(f"stack healthy in {time.monotonic() - began:.1f}s")
        topic = settings.topics().uploads.name
        uploads = synthetic_uploads(count, seed, int(time.time() * 1000))
        p = producer(settings.kafka_bootstrap, settings.kafka_security(), settings.max_message_bytes)
        for upload in uploads:
            p.send(topic, key=upload.item_id.encode(), value=encode_upload(upload))
        p.flush()
        p.close()
        say(f"produced {len(uploads)} uploads to {topic}")

        wanted = {u.item_id for u in uploads}
        dead = 0
        c = consumer(
            settings.kafka_bootstrap, settings.kafka_security(), topic,
            group_id=f"sail-demo-{uuid.uuid4().hex[:6]}", auto_offset_reset="earliest", consumer_timeout_ms=2000,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while wanted - {u.item_id for u in received} and time.monotonic() < deadline:
            for record in c:
                try:
                    upload = decode_upload(record.value, settings.limits())
                except BadInput:
                    dead += 1
                    continue
                if upload.item_id in wanted:
                    received.append(upload)
        c.close()
        say(f"consumed {len(received)} of {len(uploads)} back from Kafka ({dead} undecodable)")
        asyncio.run(_encode_and_store(settings, received, say))
    finally:
        if keep_stack:
            say("stack left running (--keep-stack); stop it with `sail-stream stack down`")
        else:
            stack.down()
    return 0 if len(received) == count else 1
