"""/v1/rank's request parsing and ordering, without a server."""

from __future__ import annotations

import pytest

from mlsd.serving.app import HTTPProblem, _group_key, _order, _ranking_request


def test_the_order_is_by_score_descending_stable_with_nulls_last():
    assert _order([0.1, 0.5, None, 0.5, -2.0, 0.1]) == [1, 3, 0, 5, 4, 2]
    assert _order([]) == []
    assert _order([None, None]) == [0, 1]


def test_groups_are_logged_and_routed_as_text():
    assert [_group_key(g) for g in ("q-1", 7, 7.0, -3)] == ["q-1", "7", "7", "-3"]


@pytest.mark.parametrize(
    ("payload", "status", "fields"),
    [
        ([], 400, set()),
        ({"items": []}, 400, set()),
        ({"group": 1}, 400, set()),
        ({"group": None, "items": []}, 422, {"group"}),
        ({"group": True, "items": []}, 422, {"group"}),
        ({"group": 1.5, "items": []}, 422, {"group"}),
        ({"group": {"a": 1}, "items": [], "k": 0}, 422, {"group", "k"}),
        ({"group": "g", "items": [], "k": "3"}, 422, {"k"}),
        ({"group": "g", "items": [], "k": True}, 422, {"k"}),
        ({"group": "g", "items": [], "k": 2.5}, 422, {"k"}),
    ],
)
def test_malformed_requests_name_the_field(payload, status, fields):
    with pytest.raises(HTTPProblem) as caught:
        _ranking_request(payload)
    assert caught.value.status == status
    assert {d["field"] for d in caught.value.details} == fields


def test_well_formed_requests():
    assert _ranking_request({"group": "g", "items": [{}]}) == ("g", [{}], None)
    assert _ranking_request({"group": 3, "items": [], "k": 2.0}) == (3, [], 2)
    assert _ranking_request({"group": 3.0, "items": [], "k": None}) == (3.0, [], None)
