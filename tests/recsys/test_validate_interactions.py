"""Validation of an interactions table: each finding on a table built to hold it, none on a
clean one, and the facts."""

from __future__ import annotations

import pandas as pd

from mlsd.recsys.validate import validate_interactions

NOW = pd.Timestamp("2026-06-01", tz="UTC").timestamp()


def clean() -> pd.DataFrame:
    users = [f"u{u}" for u in range(20) for _ in range(6)]
    items = [f"i{(u * 3 + k) % 30}" for u in range(20) for k in range(6)]
    times = pd.date_range("2026-01-01", periods=len(users), freq="h", tz="UTC")
    return pd.DataFrame({"user": users, "item": items, "at": times.astype(str)})


def checks(found) -> dict[str, str]:
    return {a.check: a.severity for a in found}


def test_a_clean_table_has_no_finding_and_its_facts():
    frame = clean()
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(30)]})
    facts, found = validate_interactions(
        frame, "user", "item", time_column="at", items=items, item_key="item_id",
        min_per_item=2, now=NOW,
    )  # fmt: skip
    assert found == []
    assert facts["users"] == 20 and facts["items"] == 30 and facts["interactions"] == 120
    assert facts["density"] == 120 / 600 and facts["per_user"]["min"] == 6
    assert facts["time"]["first"].startswith("2026-01-01")


def test_each_problem_is_found_with_its_severity():
    frame = clean()
    frame.loc[0, "user"] = None  # a row without a user
    frame = pd.concat([frame, frame.iloc[[5, 6]]])  # two repeated pairs
    frame = pd.concat([frame, pd.DataFrame({"user": ["lonely"], "item": ["i1"], "at": ["soon"]})])
    frame.loc[frame.index[3], "at"] = "2031-01-01"  # after now
    items = pd.DataFrame({"item": [f"i{i}" for i in range(25)]})  # i25..i29 unknown
    facts, found = validate_interactions(
        frame, "user", "item", time_column="at", items=items, min_per_item=2, now=NOW
    )
    assert checks(found) == {
        "missing_id": "error",
        "duplicate_pairs": "warning",
        "sparse_users": "warning",
        "unknown_items": "warning",
        "unreadable_time": "warning",
        "future_time": "warning",
    }
    by = {a.check: a for a in found}
    assert by["duplicate_pairs"].evidence["rows"] == 2
    assert by["sparse_users"].evidence["users"] == 1  # lonely (u0 keeps 5 of its 6)
    assert by["unknown_items"].evidence["items"] == 5
    assert by["unreadable_time"].evidence["rows"] == 1
    assert facts["users"] == 21


def test_an_item_table_with_other_ids_is_an_error():
    items = pd.DataFrame({"item": ["x", "y"]})
    _, found = validate_interactions(clean(), "user", "item", items=items)
    assert checks(found)["unknown_items"] == "error"
