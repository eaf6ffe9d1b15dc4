"""A minimal Faust app run by test_kafka.py in its own process: decodes uploads with the topology
codec, counts them in a changelog-backed table, and reports each item id (or the bad-input reason).
Configured from PROBE_* variables because the `faust` command line owns argv."""

import os

import faust

from topology.codec import BadInput, decode_upload

app = faust.App(
    os.environ["PROBE_APP_ID"],
    broker=f"kafka://{os.environ['PROBE_BROKER']}",
    store="memory://",
    topic_partitions=int(os.environ["PROBE_PARTITIONS"]),
    datadir=os.environ["PROBE_DATADIR"],
    web_enabled=False,
)
source = app.topic(os.environ["PROBE_SOURCE"], key_serializer="raw", value_serializer="raw")
out = app.topic(os.environ["PROBE_OUT"], key_serializer="raw", value_serializer="raw")
counts = app.Table("upload-counts", default=int)


@app.agent(source)
async def decode(stream: faust.StreamT) -> None:
    async for event in stream.events():
        try:
            upload = decode_upload(event.value)
        except BadInput as exc:
            await out.send(value=f"bad:{exc.reason}".encode())
            continue
        counts[upload.creator_id] += 1
        await out.send(key=upload.item_id.encode(), value=upload.item_id.encode())
