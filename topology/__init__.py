"""The contracts of sail-stream: topics, messages and their codec, Milvus collections, settings.

Nothing in this package does I/O; every other package reads its names and limits from here.
"""
