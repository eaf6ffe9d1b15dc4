"""Training the SAIL encoder at small scale (issue 16), after the SAIL-Embedding report's recipe.

- `recipe`: a recipe (TOML, `recipes/`) read into one frozen object;
- `data`: what a run reads (a catalogue of requests; contrastive pairs; distillation targets);
- `loop`: the training loop (stochastic specialization, checkpoints, deterministic resume, export);
- `losses`: InfoNCE over every Matryoshka prefix with a learnable temperature, in-batch and mined hard
  negatives, and a false-negative guard;
- `collab`: the collaborative signal of an interaction log for Collaborative Recommendation
  Enhancement: a time split (cold items = first seen after the cut), seq2item and co-engagement pairs,
  and ID2item targets (collaborative item vectors by a truncated SVD of the training split).

The datasets themselves (MovieLens, emoji) are read in `deploy/datasets/training.py`; `sail-stream train` runs it.
"""
