"""Steps 2 and 6: metrics, slices, calibration, thresholds, behavioural tests and reports."""
