"""mlsd predict on the bundled caravan example, as a user runs it: train, then batch-score."""

from __future__ import annotations

import json
import shlex

import pyarrow.parquet as pq
from server import ServerProcess
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
    assert scored.column_names == ["score", "label", "model_version", "flags"]
    assert scored.num_rows == 5822
    assert set(scored.column("label").to_pylist()) <= {"No", "Yes"}
    assert all(0 <= s <= 1 for s in scored.column("score").to_pylist())

    # a CSV with a few bad rows: a wrong type goes to the rejects file with its reason;
    # out-of-range and unseen values are scored and flagged (serving.on_invalid: flag)
    lines = (folder / "caravan.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [line.split(",") for line in lines[1:21]]
    rows[2][header.index("MAANTHUI")] = "1000"
    rows[5][header.index("MOSTYPE")] = "999"
    rows[7][header.index("MGEMOMV")] = "abc"
    (folder / "new.csv").write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    human = mlsd("predict", "--input", "new.csv", "--output", "new_scored.csv", cwd=folder)
    assert human.returncode == 0, human.stderr
    assert "scored 19 of 20 rows" in human.stdout and "rejected 1 rows" in human.stdout
    assert "flagged 2 rows" in human.stdout
    rejects = (folder / "new_scored.rejects.csv").read_text().splitlines()
    assert len(rejects) == 2 and rejects[0].endswith('"reason"')
    assert "MGEMOMV: expected a number, got str 'abc'" in rejects[1]
    scored = (folder / "new_scored.csv").read_text().splitlines()
    assert len(scored) == 20 and scored[0].endswith(',"flags"')
    assert "MAANTHUI: 1000 is outside the training range [1" in scored[3]
    assert "MOSTYPE: 999 is not a known category" in scored[6]

    # under on_invalid: reject they are refused too, each with its reason
    strict = (folder / "system.yaml").read_text() + "\nserving: {on_invalid: reject}\n"
    (folder / "strict.yaml").write_text(strict)
    run = mlsd(
        "predict", "-c", "strict.yaml", "--input", "new.csv", "--output", "s.csv", cwd=folder
    )
    assert run.returncode == 0 and "rejected 3 rows" in run.stdout, run.stdout + run.stderr
    rejects = (folder / "s.rejects.csv").read_text().splitlines()
    assert "MAANTHUI: 1000 is outside the training range [1" in rejects[1]
    assert "MOSTYPE: 999 is not a known category" in rejects[2]

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

    # `mlsd serve` prints one example request: a curl line with a valid held-out row, so a
    # user need not type 85 fields; the server answers it 200, unflagged
    server = ServerProcess(folder, "-c", "strict.yaml")
    out, _ = server.stop()
    (curl,) = [line for line in out.splitlines() if line.startswith("curl ")]
    words = shlex.split(curl)
    assert words[2] == f"http://127.0.0.1:{server.port}/v1/predict" and words[-2] == "-d"
    body = json.loads(words[-1])
    (row,) = body["instances"]
    assert len(row) == 85 and "Purchase" not in row
    again = ServerProcess(folder, "-c", "strict.yaml")  # on_invalid: reject
    try:
        status, answer, _ = again.client.call("POST", "/v1/predict", body)
    finally:
        again.stop()
    assert status == 200, answer
    assert answer["predictions"][0]["label"] in {"No", "Yes"}
    assert not answer["predictions"][0].get("flags")
