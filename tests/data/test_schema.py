"""Schema inference: each type, overrides, parse failures, ranges and domains."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlsd.data.schema import Schema, infer_schema
from mlsd.spec import ColumnSpec


def frame(n: int = 100) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "price": rng.normal(10, 2, n),
            "count": rng.integers(0, 5, n),
            "flag": rng.integers(0, 2, n),
            "yes": pd.Categorical(rng.choice(["true", "false"], n)),
            "color": pd.Categorical(rng.choice(["red", "green", "blue"], n)),
            "when": pd.Categorical([f"2024-01-{d % 28 + 1:02d}" for d in range(n)]),
            "note": pd.Categorical(
                [f"customer said thing number {i} about the order" for i in range(n)]
            ),
            "user_id": np.arange(n) * 7 + 3,
            "row": np.arange(n),
            "code": pd.Categorical([f"U{i:05d}" for i in range(n)]),
            "amount": pd.Categorical([str(i) for i in range(n - 3)] + ["abc", "n/a?", "12x"]),
        }
    )


def test_types_are_inferred():
    schema, typed = infer_schema(frame())
    assert schema.types == {
        "price": "numeric",
        "count": "numeric",
        "flag": "numeric",  # 0/1 numbers stay numbers (a 2 later must not be refused)
        "yes": "boolean",
        "color": "categorical",
        "when": "datetime",
        "note": "text",
        "user_id": "identifier",
        "row": "identifier",
        "code": "identifier",
        "amount": "numeric",
    }
    assert typed["when"].dtype.kind == "M"
    assert typed["amount"].dtype == float
    assert set(typed["yes"].dropna().unique()) == {0.0, 1.0}


def test_parse_failures_are_counted_with_examples():
    schema, typed = infer_schema(frame())
    amount = schema.columns["amount"]
    assert amount.parse_failures == 3
    assert set(amount.parse_examples) == {"abc", "n/a?", "12x"}
    assert typed["amount"].isna().sum() == 3


def test_declared_type_overrides_and_records_mismatch():
    schema, _ = infer_schema(
        frame(), {"color": ColumnSpec(type="numeric"), "count": ColumnSpec(type="categorical")}
    )
    assert schema.columns["color"].type == "numeric" and schema.columns["color"].declared
    assert schema.columns["color"].inferred_type == "categorical"
    assert schema.columns["color"].parse_failures == 100
    assert schema.columns["count"].type == "categorical"
    assert schema.columns["count"].domain == [0, 1, 2, 3, 4]


def test_ranges_domains_and_missing():
    df = pd.DataFrame({"x": [1.0, np.nan, 3.0, 7.0], "c": pd.Categorical(["b", "a", None, "b"])})
    schema, _ = infer_schema(df)
    x, c = schema.columns["x"], schema.columns["c"]
    assert (x.min, x.max, x.missing, x.missing_rate) == (1.0, 7.0, 1, 0.25)
    assert c.domain == ["a", "b"] and c.n_unique == 2


def test_schema_json_round_trip():
    schema, _ = infer_schema(frame())
    again = Schema.from_dict(schema.to_dict())
    assert again.types == schema.types
    assert again.columns["amount"].parse_examples == schema.columns["amount"].parse_examples


def test_boolean_words_read_alike_in_schema_and_featurizer():
    from mlsd.features.transforms import to_bool

    words = ["on", "off", "1", "0", "Yes", "n", "T", "maybe", None]
    df = pd.DataFrame({"b": pd.Categorical(words)})
    _, typed = infer_schema(df, {"b": ColumnSpec(type="boolean")})
    assert np.array_equal(typed["b"].to_numpy(), to_bool(words), equal_nan=True)
    assert typed["b"].tolist()[:7] == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0]
