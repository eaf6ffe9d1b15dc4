"""The streaming side of sail-stream: Faust agents, interest maths, the Milvus sink, the CLI."""
