"""trainer: turns a trigger into a refit, gates the candidate against the champion on the same
holdout, records the lineage in MLflow, and promotes only a model that wins."""
