"""mlsd: the nine steps of ML system design as one running system."""

__version__ = "0.1.0"
