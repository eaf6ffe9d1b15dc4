"""The SAIL encoder side: model, preprocessing, Triton serving and the async Triton client."""
