"""Step 9: the durable prediction/feedback log, drift, quality and performance monitoring."""
