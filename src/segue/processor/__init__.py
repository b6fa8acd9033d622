"""The processor: folds the event log into the read model (identity graph, profiles, timelines)."""
