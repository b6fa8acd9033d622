"""Decisioning: what should this person see now — candidates, rules, ranking, explanation."""
