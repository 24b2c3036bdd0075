"""Measuring a model or an index: evaluation against baselines, the co-occurrence baseline,
dimension tuning, and the pictures of the space (2-D map, Embedding Projector export)."""
