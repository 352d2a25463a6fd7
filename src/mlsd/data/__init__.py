"""Step 4, data: sources, schema inference, snapshots, splits and validation."""

from mlsd.data.snapshot import Dataset, load_dataset, split_dataset
from mlsd.data.validate import Anomaly, ValidationReport, validate

__all__ = ["Anomaly", "Dataset", "ValidationReport", "load_dataset", "split_dataset", "validate"]
