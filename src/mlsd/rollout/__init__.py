"""Step 8: shadow, canary, A/B and bandit rollouts, decided by statistics on live outcomes."""
