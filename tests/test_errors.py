"""The error helpers every message shares."""

from __future__ import annotations

from mlsd.errors import did_you_mean


def test_did_you_mean_names_the_close_choices_or_nothing():
    assert did_you_mean("traget", ["target", "time"]) == " — did you mean 'target'?"
    assert did_you_mean("ndcg", ["ndcg@10", "ndcg@5", "mae"], n=3) == (
        " — did you mean 'ndcg@5' or 'ndcg@10'?"
    )
    assert did_you_mean(3, [1, 2, 33]) == " — did you mean '33'?"  # names as text
    assert did_you_mean("zzz", ["target"]) == ""
