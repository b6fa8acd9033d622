"""Identity resolution: deterministic identifiers and probabilistic matching."""
