"""Named stages of a long job: wall time and peak memory of each, and a progress bar."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Stages:
    """Times each stage of a job; shows a progress bar on stderr when it is a terminal.

    ``with stages("read"): ...`` records ``timings["read_s"]`` and the process's peak memory
    after the stage in ``peak_memory_mb["read"]``.
    """

    def __init__(self, total: int = 0, *, label: str = "", show: bool | None = None):
        self.timings: dict[str, float] = {}
        self.peak_memory_mb: dict[str, float] = {}
        self._bar = None
        if show is None:
            show = sys.stderr.isatty()
        if show and total:
            from tqdm import tqdm

            # a handful of long stages: draw every one (tqdm skips updates within 0.1 s)
            self._bar = tqdm(
                total=total,
                desc=label,
                unit="stage",
                leave=False,
                file=sys.stderr,
                mininterval=0,
            )

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        """Run one stage and record its time and memory."""
        if self._bar is not None:
            self._bar.set_postfix_str(name)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[f"{name}_s"] = round(time.perf_counter() - start, 3)
            self.peak_memory_mb[name] = round(peak_memory_mb(), 1)
            if self._bar is not None:
                self._bar.update(1)

    def close(self) -> None:
        """Remove the progress bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def progress_bar(total: int | None, desc: str, *, unit: str = "rows", show: bool | None = None):
    """A tqdm bar on stderr when it is a terminal (or ``show``), else one that draws
    nothing; either is a context manager with ``update(n)``."""
    if show is None:
        show = sys.stderr.isatty()
    if not show:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, unit_scale=True, desc=desc, leave=False, file=sys.stderr)
