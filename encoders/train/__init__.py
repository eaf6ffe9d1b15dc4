"""Training the SAIL encoder at small scale (issue 16), after the SAIL-Embedding report's recipe.

What is here so far, pure and unit-tested, for the training loop to build on:
- `losses`: InfoNCE over every Matryoshka prefix with a learnable temperature, in-batch and mined hard
  negatives, and a false-negative guard.
- `collab`: the collaborative signal of an interaction log for Collaborative Recommendation
  Enhancement: a time split (cold items = first seen after the cut), seq2item and co-engagement pairs,
  and ID2item targets (collaborative item vectors by a truncated SVD of the training split).

Not here yet: the training entry point (`sail-stream train --recipe ...`), recipes, checkpoints,
vision alignment and the export of a trained encoder folder.
"""
