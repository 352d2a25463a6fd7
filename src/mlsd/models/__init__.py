"""Step 6, models: baselines, candidates, tuning, training, packages and the registry."""
