"""mlsd: the nine steps of ML system design as one running system.

``mlsd.load("system.yaml")`` returns a :class:`~mlsd.api.System`; the ``mlsd`` command does
the same from a shell.
"""

__version__ = "0.1.0"


def load(path="system.yaml"):
    """Load a system.yaml as a System (imported lazily so ``import mlsd`` stays light)."""
    from mlsd.api import load as _load

    return _load(path)
