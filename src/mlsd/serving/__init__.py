"""Step 7, serving: the HTTP service, batch scoring and request validation."""
