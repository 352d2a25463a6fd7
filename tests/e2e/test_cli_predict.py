"""mlsd predict on the bundled caravan example, as a user runs it: train, then batch-score."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
from test_cli_data import mlsd


def test_caravan_train_then_predict(example):
    folder = example("caravan")
    trained = mlsd("train", "--json", cwd=folder)
    assert trained.returncode == 0, trained.stderr
    version = json.loads(trained.stdout)["model_version"]

    # the whole bundled file, scored with the champion into Parquet
    run = mlsd(
        "predict", "--input", "caravan.csv", "--output", "scored.parquet", "--json", cwd=folder
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["rows"] == summary["scored"] == 5822
    assert summary["rejected"] == 0 and summary["rejects"] is None
    assert summary["model_version"] == str(version)
    assert summary["unknown_columns"] == []  # Purchase is the target: known
    assert summary["rows_per_s"] > 0 and summary["seconds"] > 0
    scored = pq.read_table(folder / "scored.parquet")
    assert scored.column_names == ["score", "label", "model_version"]
    assert scored.num_rows == 5822
    assert set(scored.column("label").to_pylist()) <= {"No", "Yes"}
    assert all(0 <= s <= 1 for s in scored.column("score").to_pylist())

    # a CSV with a few bad rows: they go to the rejects file, each with its reason
    lines = (folder / "caravan.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [line.split(",") for line in lines[1:21]]
    rows[2][header.index("MAANTHUI")] = "1000"
    rows[5][header.index("MOSTYPE")] = "999"
    rows[7][header.index("MGEMOMV")] = "abc"
    (folder / "new.csv").write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    human = mlsd("predict", "--input", "new.csv", "--output", "new_scored.csv", cwd=folder)
    assert human.returncode == 0, human.stderr
    assert "scored 17 of 20 rows" in human.stdout and "rejected 3 rows" in human.stdout
    rejects = (folder / "new_scored.rejects.csv").read_text().splitlines()
    assert len(rejects) == 4 and rejects[0].endswith('"reason"')
    assert "MAANTHUI: 1000 is outside the training range [1" in rejects[1]
    assert "MOSTYPE: 999 is not a known category" in rejects[2]
    assert "MGEMOMV: expected a number, got str 'abc'" in rejects[3]
    assert len((folder / "new_scored.csv").read_text().splitlines()) == 18

    # a model that does not exist, and a file without a needed column: exit 2, no traceback
    bad = mlsd(
        "predict", "--input", "caravan.csv", "--output", "x.parquet", "--model", "9", cwd=folder
    )
    assert bad.returncode == 2
    assert "unknown model" in bad.stderr and "Traceback" not in bad.stderr
    assert not (folder / "x.parquet").exists()
    (folder / "short.csv").write_text("MOSTYPE,MAANTHUI\n33,1\n")
    short = mlsd("predict", "--input", "short.csv", "--output", "x.parquet", "--json", cwd=folder)
    assert short.returncode == 2 and "Traceback" not in short.stderr
    assert "lacks 83 input column(s)" in json.loads(short.stdout)["error"]["message"]
