"""Stage timing, memory and the progress bar."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mlsd.stages import Stages


def test_stages_record_time_and_memory(capsys):
    stages = Stages(2, label="job", show=True)
    with stages("sleep"):
        time.sleep(0.05)
    with stages("alloc"):
        block = np.ones(20_000_000)  # 160 MB: peak memory must see it
        del block
    stages.close()
    assert stages.timings["sleep_s"] >= 0.05
    assert stages.peak_memory_mb["alloc"] >= stages.peak_memory_mb["sleep"]
    assert stages.peak_memory_mb["alloc"] > 150
    err = capsys.readouterr().err
    assert "job" in err and "2/2" in err


def test_stage_time_is_recorded_when_it_fails():
    stages = Stages(show=False)
    with pytest.raises(RuntimeError), stages("broken"):
        raise RuntimeError("boom")
    assert "broken_s" in stages.timings
