"""The real services on loopback: Apache Kafka (KRaft), Milvus, Triton. See `deploy.local.stack`."""
