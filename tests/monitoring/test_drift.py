"""Drift tests against reference profiles: honest on no drift, sharp on real drift."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy.stats import ks_2samp

from mlsd.data.profile import predictions_profile, profile, psi_numeric
from mlsd.monitoring import drift as drift_module
from mlsd.monitoring.drift import DriftError, adjust, column_drift, detect, scores_drift
from mlsd.spec import DriftSpec

BIKESHARE_TYPES = {
    "season": "categorical",
    "mnth": "categorical",
    "hr": "numeric",
    "holiday": "boolean",
    "weekday": "numeric",
    "workingday": "boolean",
    "weathersit": "categorical",
    "temp": "numeric",
    "atemp": "numeric",
    "hum": "numeric",
    "windspeed": "numeric",
    "casual": "numeric",
    "registered": "numeric",
    "bikers": "numeric",
}


def mixed(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Columns of the kinds a real table has: skewed, discrete, holed, rare levels, flags."""
    holes = rng.normal(size=n)
    holes[rng.random(n) < 0.2] = np.nan
    zipf = 1 / np.arange(1, 81)
    return pd.DataFrame(
        {
            "normal": rng.normal(size=n),
            "lognormal": rng.lognormal(size=n),
            "counts": rng.poisson(3, size=n).astype(float),
            "holes": holes,
            "zero_inflated": np.where(rng.random(n) < 0.6, 0.0, rng.exponential(size=n)),
            "city": rng.choice(list("abcde"), n, p=[0.4, 0.3, 0.15, 0.1, 0.05]),
            "item": rng.choice([f"i{k}" for k in range(80)], n, p=zipf / zipf.sum()),
            "flag": rng.random(n) < 0.1,
        }
    )


MIXED_TYPES = {
    "normal": "numeric",
    "lognormal": "numeric",
    "counts": "numeric",
    "holes": "numeric",
    "zero_inflated": "numeric",
    "city": "categorical",
    "item": "categorical",
    "flag": "boolean",
}


@pytest.fixture(scope="module")
def bikeshare() -> pd.DataFrame:
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "bikeshare" / "bikeshare.csv"
    return pd.read_csv(path)


@pytest.fixture(scope="module")
def reference():
    rng = np.random.default_rng(7)
    return profile(mixed(20_000, rng), MIXED_TYPES)


# --- no drift: at most 5% of windows alert ------------------------------------------------------


def test_random_windows_of_the_training_data_rarely_alert(bikeshare):
    prof = profile(bikeshare, BIKESHARE_TYPES)
    rng = np.random.default_rng(0)
    alerts, p_values = 0, []
    for _ in range(100):
        window = bikeshare.iloc[rng.choice(len(bikeshare), 1000, replace=False)]
        result = detect(prof, {c: window[c].to_numpy() for c in BIKESHARE_TYPES})
        assert len(result.columns) == len(BIKESHARE_TYPES)
        alerts += bool(result.drifted)
        p_values += [c["p_value"] for c in result.columns]
    assert alerts <= 5
    # the tests themselves are not trigger-happy: per-column p < 0.05 at most ~5% of the time
    assert np.mean(np.array(p_values) < 0.05) <= 0.06


def test_fresh_windows_from_the_same_process_rarely_alert(reference):
    rng = np.random.default_rng(1)
    alerts = 0
    for i in range(100):
        window = mixed(100 if i % 2 else 2000, rng)
        result = detect(reference, {c: window[c].to_numpy() for c in MIXED_TYPES})
        alerts += bool(result.drifted)
    assert alerts <= 5


def test_methods_are_chosen_by_type_and_discreteness(reference):
    window = mixed(500, np.random.default_rng(2))
    result = detect(reference, pa.Table.from_pandas(window))
    methods = {c["column"]: c["method"] for c in result.columns}
    assert methods == {
        "normal": "ks",
        "lognormal": "ks",
        "counts": "chi2",  # few distinct values: exact counts, chi-square
        "holes": "ks",
        "zero_inflated": "ks",
        "city": "chi2",
        "item": "chi2",
        "flag": "chi2",
    }
    assert reference["columns"]["counts"]["sketch"]["distinct"] is True
    assert reference["columns"]["normal"]["sketch"]["distinct"] is False


# --- drift is found ----------------------------------------------------------------------------


def test_half_sd_shift_of_one_feature_in_1000_rows_is_found(reference):
    rng = np.random.default_rng(3)
    others = 0
    for _ in range(20):
        window = mixed(1000, rng)
        window["lognormal"] += 0.5 * reference["columns"]["lognormal"]["std"]
        result = detect(reference, {c: window[c].to_numpy() for c in MIXED_TYPES})
        assert "lognormal" in result.drifted
        others += len(set(result.drifted) - {"lognormal"})
    # BH bounds the share of false discoveries, not their existence: rare, never the rule
    assert others <= 2


def test_new_category_taking_10_percent_is_found(reference):
    rng = np.random.default_rng(4)
    others = 0
    for _ in range(20):
        window = mixed(1000, rng)
        window.loc[rng.random(1000) < 0.1, "city"] = "brand-new"
        result = detect(reference, {c: window[c].to_numpy() for c in MIXED_TYPES})
        assert "city" in result.drifted
        others += len(set(result.drifted) - {"city"})
        city = result.column("city")
        assert city["unseen"]["brand-new"] == city["current_hist"][-1]
        assert city["edges_or_categories"][-1] == "__other__"
    assert others <= 2


def test_third_sd_shift_is_caught_by_ks_where_psi_would_not_be():
    rng = np.random.default_rng(5)
    prof = profile(pd.DataFrame({"x": rng.normal(size=50_000)}), {"x": "numeric"})
    x = prof["columns"]["x"]
    shifted = rng.normal(0.3, 1.0, 10_000)
    ks = column_drift(x, shifted, column="x")
    assert ks["method"] == "ks" and 0.1 < ks["distance"] < 0.14  # D of a 0.3 sd shift: 0.12
    assert ks["p_value"] < 1e-20
    assert ks["distances"]["psi"] == pytest.approx(psi_numeric(x, shifted))
    assert ks["distances"]["psi"] < 0.1  # under PSI's customary alert level
    assert ks["distances"]["wasserstein"] == pytest.approx(0.3, abs=0.03)
    assert detect(prof, {"x": shifted}).drifted == ["x"]
    assert detect(prof, {"x": shifted}, spec=DriftSpec(numeric="psi")).drifted == []


def test_huge_windows_do_not_alert_on_trivial_shifts():
    rng = np.random.default_rng(6)
    prof = profile(pd.DataFrame({"x": rng.normal(size=50_000)}), {"x": "numeric"})
    tiny = detect(prof, {"x": rng.normal(0.05, 1.0, 500_000)})
    (col,) = tiny.columns
    assert col["p_adjusted"] < 1e-6  # significant...
    assert col["distance"] < col["threshold"] and tiny.drifted == []  # ...but too small to matter
    strict = DriftSpec(thresholds={"ks": 0.01})
    assert detect(prof, {"x": rng.normal(0.05, 1.0, 500_000)}, spec=strict).drifted == ["x"]


def test_ks_also_counts_a_few_values_moving_far_and_a_heavy_tail_moving():
    rng = np.random.default_rng(13)
    ref = pd.DataFrame({"x": rng.normal(size=50_000), "tail": rng.lognormal(0, 2, 50_000)})
    prof = profile(ref, {"x": "numeric", "tail": "numeric"})
    x = rng.normal(size=20_000)
    x[:600] = -999.0  # 3% of rows turned into a sentinel
    tail = rng.lognormal(0, 2, 20_000) / 2  # every value halved
    result = detect(prof, {"x": x, "tail": tail})
    sentinel, halved = result.column("x"), result.column("tail")
    assert sentinel["distance"] < 0.05 and sentinel["distances"]["wasserstein"] > 10
    assert halved["distance"] > 0.1 and halved["distances"]["wasserstein"] < 0.1
    assert result.drifted == ["x", "tail"]
    assert sentinel["material"] == {"ks": 0.05, "wasserstein": 0.1}


# --- the statistics ----------------------------------------------------------------------------


def test_binned_ks_never_exceeds_the_raw_statistic():
    rng = np.random.default_rng(8)
    ref = rng.gamma(2.0, size=5000)
    col = profile(pd.DataFrame({"x": ref}), {"x": "numeric"})["columns"]["x"]
    for shift in (0.0, 0.1, 0.5):
        cur = rng.gamma(2.0, size=800) + shift
        binned = column_drift(col, cur)
        raw = ks_2samp(ref, cur, method="asymp")
        assert binned["statistic"] <= raw.statistic + 1e-12
        assert binned["statistic"] >= raw.statistic - 0.02  # percentile bins lose little
        assert binned["p_value"] >= raw.pvalue * 0.999


def test_bh_and_bonferroni():
    p = [0.001, 0.008, 0.039, 0.041, 0.9]
    assert adjust(p, "bonferroni") == pytest.approx([0.005, 0.04, 0.195, 0.205, 1.0])
    assert adjust(p, "bh") == pytest.approx([0.005, 0.02, 0.05125, 0.05125, 0.9])
    with pytest.raises(DriftError, match="correction"):
        adjust(p, "holm")
    # several columns drifting a little: BH finds more of them than Bonferroni
    rng = np.random.default_rng(9)
    n = 20
    ref = pd.DataFrame({f"x{i}": rng.normal(size=20_000) for i in range(n)})
    prof = profile(ref, dict.fromkeys(ref.columns, "numeric"))
    window = {f"x{i}": rng.normal(0.17 if i < 8 else 0.0, 1.0, 1000) for i in range(n)}
    bh = detect(prof, window, spec=DriftSpec(alpha=0.05))
    bonferroni = detect(prof, window, spec=DriftSpec(alpha=0.05, correction="bonferroni"))
    assert bh.correction == "bh" and bonferroni.correction == "bonferroni"
    assert set(bonferroni.drifted) <= set(bh.drifted) <= {f"x{i}" for i in range(8)}
    assert len(bh.drifted) > len(bonferroni.drifted)


def test_missing_values_constant_and_empty_columns():
    ref = pd.DataFrame({"x": [3.0] * 1000, "c": ["a", "b"] * 500, "y": np.arange(1000.0)})
    prof = profile(ref, {"x": "numeric", "c": "categorical", "y": "numeric"})
    same = detect(
        prof,
        {
            "x": np.array([3.0] * 300 + [np.nan] * 100),
            "c": pa.array(["a", "b", None, ""] * 100),
            "y": [None] * 400,
        },
    )
    x, c, y = same.columns
    assert (x["n_current"], x["missing_current"], x["drifted"]) == (300, 0.25, False)
    assert x["p_value"] == 1.0
    assert (c["n_current"], c["missing_current"], c["drifted"]) == (200, 0.5, False)
    assert y["note"] == "no values to compare" and y["p_value"] == 1.0 and not y["drifted"]
    moved = detect(prof, {"x": np.full(400, 3.5), "c": ["a"] * 400, "y": np.arange(0, 1000, 2.5)})
    assert moved.drifted == ["x", "c"]
    assert moved.column("x")["distance"] == 1.0  # every value left the constant
    # values above a constant reference's maximum are seen (the sketch closes above the max)
    assert detect(prof, {"x": np.full(400, 3.0 + 1e-9)}).drifted == ["x"]
    json.dumps(moved.to_dict(), allow_nan=False)


def test_inputs_numpy_arrow_lists_and_old_profiles(reference, monkeypatch):
    window = mixed(800, np.random.default_rng(10))
    as_numpy = detect(reference, {c: window[c].to_numpy() for c in MIXED_TYPES}).to_dict()
    monkeypatch.setattr(drift_module, "PARALLEL_VALUES", 1)  # columns in threads: same answer
    assert detect(reference, {c: window[c].to_numpy() for c in MIXED_TYPES}).to_dict() == as_numpy
    monkeypatch.undo()
    table = pa.Table.from_pandas(window).combine_chunks()
    chunked = pa.concat_tables([table.slice(0, 300), table.slice(300)])
    as_arrow = detect(reference, chunked).to_dict()
    as_lists = detect(reference, {c: window[c].tolist() for c in MIXED_TYPES}).to_dict()
    as_dict = detect(
        reference, {**dict(table.to_pydict()), "city": pa.array(window["city"]).dictionary_encode()}
    ).to_dict()
    # Parquet read with read_dictionary: one dictionary per chunk
    chunked_dicts = pa.chunked_array(
        [
            pa.array(window["city"][:300]).dictionary_encode(),
            pa.array(window["city"][300:]).dictionary_encode(),
        ]
    )
    city = reference["columns"]["city"]
    assert column_drift(city, chunked_dicts) == column_drift(city, window["city"].to_numpy())
    assert as_numpy == as_arrow == as_lists == as_dict
    assert as_numpy["n_rows"] == 800
    # a profile written before the sketch existed: the 10-bin histogram serves instead
    old = json.loads(json.dumps(reference))
    for col in old["columns"].values():
        col.pop("sketch", None)
    shifted = window.assign(normal=window["normal"] + 0.5)
    found = detect(old, {c: shifted[c].to_numpy() for c in MIXED_TYPES})
    assert found.drifted == ["normal"]
    assert found.column("normal")["method"] == "ks"


def test_boolean_words_and_categories_as_numbers():
    prof = profile(
        pd.DataFrame({"b": [True, False, False, False] * 250, "k": [1, 2, 2, 3] * 250}),
        {"b": "boolean", "k": "categorical"},
    )
    words = detect(prof, {"b": ["yes", "no", "no", "no"] * 50, "k": [1.0, 2.0, 2.0, 3.0] * 50})
    assert words.drifted == [] and words.column("b")["current_hist"] == [50, 150]
    assert words.column("k")["current_hist"] == [100, 50, 50, 0]
    flipped = detect(prof, {"b": [1, 1, 1, 0] * 50, "k": ["2"] * 200})
    assert flipped.drifted == ["b", "k"]


def test_spec_overrides_and_thresholds(reference):
    window = mixed(1000, np.random.default_rng(11))
    spec = DriftSpec(
        columns={"normal": "wasserstein", "city": "psi", "counts": "ks"},
        thresholds={"wasserstein": 0.2},
        alpha=0.05,
    )
    result = detect(reference, {c: window[c].to_numpy() for c in MIXED_TYPES}, spec=spec)
    methods = {c["column"]: (c["method"], c["threshold"]) for c in result.columns}
    assert methods["normal"] == ("wasserstein", 0.2)
    assert methods["city"] == ("psi", 0.1)
    assert methods["counts"] == ("ks", 0.05)
    assert (
        result.column("normal")["distance"] == result.column("normal")["distances"]["wasserstein"]
    )
    assert result.alpha == 0.05
    only = detect(reference, {"city": window["city"].to_numpy()}, columns=["city"])
    assert [c["column"] for c in only.columns] == ["city"]
    partial = detect(reference, {"city": window["city"].to_numpy()})
    assert partial.absent == [c for c in MIXED_TYPES if c != "city"]


def test_clear_errors(reference):
    window = {"normal": np.zeros(10)}
    with pytest.raises(DriftError, match=r"unknown column 'norml'.*did you mean 'normal'"):
        detect(reference, window, spec=DriftSpec(columns={"norml": "ks"}))
    with pytest.raises(DriftError, match="no drift method 'ks' for column 'city'"):
        detect(reference, window, spec=DriftSpec(columns={"city": "ks"}))
    with pytest.raises(DriftError, match="unknown column 'city' in the current data"):
        detect(reference, window, columns=["city"])
    with pytest.raises(DriftError, match="unknown column 'nope' in the reference profile"):
        detect(reference, window, columns=["nope"])
    text = profile(pd.DataFrame({"t": ["a b", "c"]}), {"t": "text"})["columns"]["t"]
    with pytest.raises(DriftError, match="type 'text'"):
        column_drift(text, ["x"], column="t")
    with pytest.raises(Exception, match="wasserstein"):
        DriftSpec(categorical="wasserstein")


def test_prediction_drift_with_the_same_machinery():
    rng = np.random.default_rng(12)
    scores = rng.beta(2, 5, 3000)
    prof = predictions_profile(scores, "binary", ["no", "yes"], threshold=0.5)
    assert set(prof["columns"]) == {"score", "label"}
    ok = scores_drift(prof["columns"]["score"], rng.beta(2, 5, 1000))
    assert ok["column"] == "prediction" and not ok["drifted"]
    moved = scores_drift(prof["columns"]["score"], rng.beta(3, 4, 1000))
    assert moved["drifted"] and moved["p_adjusted"] == moved["p_value"]
    labels = np.where(rng.beta(3, 4, 1000) >= 0.5, "yes", "no")
    assert detect(prof, {"label": labels}).drifted == ["label"]
    multi = predictions_profile(rng.dirichlet([1, 2, 3], 500), "multiclass", ["a", "b", "c"])
    assert set(multi["columns"]) == {
        "probabilities.a",
        "probabilities.b",
        "probabilities.c",
        "label",
    }
    assert set(predictions_profile(scores, "regression")["columns"]) == {"value"}


def test_integer_class_labels_have_the_keys_the_server_answers_with():
    """Found by the corpus (digits): classes 0.0-9.0 were profiled as '0.0'-'9.0' while the
    served labels (0.0) count as category '0': every prediction looked unseen (distance 1)."""
    rng = np.random.default_rng(15)
    classes = [0.0, 1.0, 2.0]
    prof = predictions_profile(rng.dirichlet([2, 2, 2], 600), "multiclass", classes)
    assert set(prof["columns"]["label"]["counts"]) == {"0", "1", "2", "__other__"}
    served = rng.choice(classes, 400).astype(object)  # the labels as the server answers them
    assert detect(prof, {"label": served}).drifted == []


def test_profile_sketch_by_hand():
    rng = np.random.default_rng(14)
    df = pd.DataFrame({"x": rng.normal(size=1000), "k": [0.0, 1.0, 1.0, 2.0] * 250})
    cols = profile(df, {"x": "numeric", "k": "numeric"})["columns"]
    x = cols["x"]["sketch"]
    assert x["distinct"] is False and sum(x["counts"]) == 1000
    assert x["edges"][0] == cols["x"]["min"]
    assert x["edges"][-1] == np.nextafter(cols["x"]["max"], np.inf)  # nothing above the max
    assert x["counts"][0] == 0 and x["counts"][-1] == 0
    assert set(cols["x"]["histogram"]["edges"]) <= set(x["edges"])  # coarse bins nest
    k = cols["k"]["sketch"]
    assert k["distinct"] is True
    assert k["edges"] == [0.0, 1.0, 2.0, np.nextafter(2.0, np.inf)]
    assert k["counts"] == [0, 250, 500, 250, 0] and k["means"][1:4] == [0.0, 1.0, 2.0]
