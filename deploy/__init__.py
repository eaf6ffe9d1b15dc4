"""How sail-stream runs: the local stack launcher (`deploy.local`), Triton model repository,
manifests and dashboards."""
