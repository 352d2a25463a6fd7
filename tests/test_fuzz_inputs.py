"""Bad specs and bad files: whatever a user hands mlsd, it answers with an MlsdError.

Hypothesis feeds the spec loader arbitrary text and bytes, YAML soup and mutated valid
specs, and feeds the data readers (as ``mlsd validate`` calls them) broken CSV and Parquet
files. Each input either loads or raises an ``MlsdError`` with a message; any other
exception would reach the user as a traceback, and is a bug.
"""

from __future__ import annotations

import copy
import csv
import io
import math
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsd.data.sources import read_source
from mlsd.data.validate import ValidationReport, validate
from mlsd.errors import DataError, MlsdError, SpecError
from mlsd.spec import SystemSpec, load_spec, parse_spec

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# values near ±1.8e308 overflow numpy's sums on purpose here; the warnings say only that
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

MINIMAL = {
    "name": "fuzz",
    "problem": {"task": "binary", "target": "y"},
    "data": {"source": "data.csv"},
}

# valid starting points: a small spec and every committed example (each covers other sections)
BASES = [MINIMAL] + [
    yaml.safe_load((EXAMPLES / name / "system.yaml").read_text())
    for name in ("caravan", "bikeshare", "movielens", "movielens-recs")
]


def _message(error: MlsdError) -> str:
    """The text a user sees; fails the test when it says nothing."""
    text = str(error)
    assert error.message.strip(), f"{type(error).__name__} with an empty message"
    assert text.strip()
    return text


def check_parse(text: str) -> SystemSpec | None:
    """parse_spec loads ``text`` or raises a SpecError whose problems cite file and key."""
    try:
        return parse_spec(text, file="fuzz.yaml")
    except SpecError as error:
        assert "fuzz.yaml" in _message(error)
        for problem in error.problems:
            assert problem["file"] == "fuzz.yaml"
            assert problem["key"] and problem["problem"]
        return None


def check_load(content: bytes) -> SystemSpec | None:
    """load_spec on a file holding ``content``: loads, or a SpecError naming the file."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "system.yaml"
        path.write_bytes(content)
        try:
            return load_spec(path)
        except SpecError as error:
            assert str(path) in _message(error)
            return None


# --- the spec loader: arbitrary input --------------------------------------------------------

# fmt: off
SOUP = [  # pieces of YAML syntax and of a spec, and characters YAML rejects
    "{", "}", "[", "]", ": ", ":", "- ", ",", "\n", "  ", "\t", "#", "'", '"', "|",
    ">", "? ", "&a ", "*a", "&b ", "*b", "<<: *a", "!!int ", "!!float ", "!!bool ",
    "!!binary ", "!!timestamp ", "!!set ", "!!omap ", "!!python/object:os.system ",
    "!custom ", "%YAML 1.1\n", "---\n", "...\n", "~", "null", ".nan", ".inf", "-.inf",
    "0x1F", "1e400", "-1", "99999999999999999999999", "2020-13-45", "2020-01-01",
    "yes", "name", "problem", "task", "binary", "target", "y", "data", "source",
    "data.csv", "seed", "split", "valid", "\x00", "\ufeff", "\u2028", "é",
]
# fmt: on
YAML_SOUP = st.lists(st.sampled_from(SOUP), max_size=40).map("".join)


@FUZZ
@given(st.one_of(st.text(max_size=200), YAML_SOUP))
def test_any_text_parses_or_raises_a_spec_error(text):
    check_parse(text)


@FUZZ
@given(st.one_of(st.binary(max_size=200), YAML_SOUP.map(lambda t: t.encode("utf-8", "replace"))))
def test_any_bytes_in_a_file_load_or_raise_a_spec_error(content):
    check_load(content)


@settings(FUZZ, max_examples=25)
@given(
    st.sampled_from(["[", "{a: ", "- "]),
    st.integers(min_value=1, max_value=3000),
)
def test_deep_nesting_is_refused_not_a_recursion_error(opener, depth):
    closer = {"[": "]", "{a: ": "}", "- ": ""}[opener]
    if opener == "- ":  # block sequences nest by indentation
        text = "".join("  " * i + "- \n" for i in range(depth)) + "  " * depth + "1\n"
    else:
        text = "x: " + opener * depth + "1" + closer * depth + "\n"
    assert check_parse(text) is None  # a deep value under an unknown key never loads


@settings(FUZZ, max_examples=20)
@given(st.integers(min_value=2, max_value=12), st.integers(min_value=2, max_value=12))
def test_billion_laughs_is_refused_quickly(width, depth):
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, depth):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    text = "\n".join(lines) + "\n"
    start = time.perf_counter()
    with pytest.raises(SpecError) as info:
        parse_spec(text, file="laughs.yaml")
    assert time.perf_counter() - start < 5
    assert "laughs.yaml:" in _message(info.value)


@pytest.mark.parametrize(
    "text, says",
    [
        ("a: &a [*a]\n", "alias inside itself"),
        ("? [a, b]\n: x\n", "unhashable key"),
        ("!!set : x\n", "unhashable key"),
        ("name: 2020-13-45\n", "month must be in 1..12"),
        ("seed: !!int x\n", "cannot read 'x'"),
        ("seed: !!bool x\n", "cannot read 'x'"),
        ("1: x\n", "key 1"),
        ("~: x\n", "key None"),
        ("problem:\n  a[1]: x\n", "unknown key 'a[1]'"),
    ],
)
def test_what_the_fuzzing_found_names_line_and_cause(text, says):
    with pytest.raises(SpecError) as info:
        parse_spec(text, file="found.yaml")
    [found] = [p for p in info.value.problems if says in p["problem"]]
    assert found["line"] is not None and f"found.yaml:{found['line']}: " in str(info.value)


def test_a_file_that_is_not_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "system.yaml"
    path.write_bytes(b"name: demo\nproblem: caf\xe9\n")
    with pytest.raises(SpecError, match=r"system\.yaml:2: \(yaml\): not UTF-8 text \(byte 0xe9"):
        load_spec(path)
    path.write_bytes(b"\xef\xbb\xbf" + yaml.safe_dump(MINIMAL).encode())  # a BOM is fine
    assert load_spec(path).name == "fuzz"


# --- the spec loader: mutations of valid specs -----------------------------------------------

WRONG_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        ["binary", "regression", "auto", "time", "random", "24h", "-1d", "y", "x", "", "0"]
    ),
    st.lists(st.one_of(st.integers(-5, 5), st.text(max_size=4), st.none()), max_size=3),
    st.dictionaries(st.text(max_size=6), st.one_of(st.integers(-5, 5), st.none()), max_size=3),
    st.recursive(st.integers(0, 3), lambda inner: st.lists(inner, max_size=2), max_leaves=20),
)


def _slots(node, path=()):
    """Every (path, container, key) of a spec dict, to pick one to mutate."""
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for key, value in list(items):
        yield (*path, key), node, key
        yield from _slots(value, (*path, key))


@st.composite
def mutated_specs(draw):
    spec = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        slots = list(_slots(spec))
        if not slots:
            break
        _, container, key = draw(st.sampled_from(slots))
        action = draw(st.sampled_from(["delete", "replace", "replace", "add", "nest"]))
        if action == "delete":
            del container[key]
        elif action == "replace":
            container[key] = draw(WRONG_VALUES)
        elif action == "add" and isinstance(container, dict):
            container[draw(st.text(min_size=1, max_size=8))] = draw(WRONG_VALUES)
        elif action == "nest":
            container[key] = {"nested": container[key]}
    return spec


@FUZZ
@given(mutated_specs())
def test_mutated_specs_load_or_raise_a_spec_error(spec):
    text = yaml.safe_dump(spec, allow_unicode=True)
    loaded = check_parse(text)
    if loaded is not None:  # what loads is a whole, valid spec
        assert loaded.problem.target and loaded.data.source


# sections whose keys are a fixed set: an unknown key there is always an error
MODEL_PATHS = [(), ("problem",), ("data",), ("features",), ("evaluation",), ("models",)]


@settings(FUZZ, max_examples=40)
@given(st.sampled_from(BASES), st.data())
def test_an_unknown_key_is_named_with_file_and_line(base, data):
    spec = copy.deepcopy(base)
    path = data.draw(st.sampled_from([p for p in MODEL_PATHS if _section(spec, p) is not None]))
    key = "zz_" + data.draw(st.text("abcdefghij_", min_size=1, max_size=8))
    _section(spec, path, create=True)[key] = data.draw(WRONG_VALUES)
    text = yaml.safe_dump(spec)
    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / "system.yaml"
        file.write_text(text)
        with pytest.raises(SpecError) as info:
            load_spec(file)
    dotted = ".".join([*path, key])
    [found] = [p for p in info.value.problems if p["key"] == dotted]
    lines = text.splitlines()
    assert found["file"] == str(file) and f"unknown key '{key}'" in found["problem"]
    assert key in lines[found["line"] - 1]  # the line named is the line of the key
    assert f"{file}:{found['line']}: {dotted}" in str(info.value)


def _section(spec: dict, path: tuple, create: bool = False) -> dict | None:
    """The mapping at ``path`` ({} for an absent section, added with ``create``); None when
    something on the way is not a mapping."""
    node = spec
    for part in path:
        if not isinstance(node, dict):
            return None
        node = node.setdefault(part, {}) if create else node.get(part, {})
    return node if isinstance(node, dict) else None


# --- the data readers, called as `mlsd validate` calls them ----------------------------------

SPEC = "name: fuzz\nproblem:\n  task: {task}\n  target: y\ndata:\n  source: {source}\n"


def check_data(
    content: bytes, name: str = "data.csv", task: str = "binary"
) -> ValidationReport | None:
    """Write ``content`` as the spec's source and run what `mlsd validate` runs.

    The reader raises a DataError naming the file, or returns rows; validation of those rows
    then returns a report or raises an MlsdError. Anything else fails the test.
    """
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "system.yaml").write_text(SPEC.format(source=name, task=task))
        (root / name).write_bytes(content)
        spec = load_spec(root)
        try:
            table = read_source(spec.data.source, spec.base_dir)
        except DataError as error:
            assert name in _message(error)  # a bad file names the file
            return None
        assert table.num_rows > 0
        try:
            report = validate(spec, progress=False)
        except MlsdError as error:
            _message(error)
            return None
        assert report.n_rows == table.num_rows
        return report


# text without separators or quotes (ODD_FIELDS brings those), and encodable as UTF-8
PLAIN = st.characters(blacklist_categories=["Cs"], blacklist_characters=",\"'\r\n")
# fmt: off
ODD_FIELDS = [  # what real CSVs hold: missing markers, stray quotes, NULs, BOMs
    "", "NA", "null", "nan", "true", "False", "1e308", "-1e308", "2020-01-01",
    "2020-13-45", "9999-12-31 23:59:59", '"', "'", '""', '"a,b"', "'a,b'", '"x""y"',
    "\x00", "\ufeff", "é", "\r", " ", "a\nb",
]
# fmt: on
CLEAN_FIELDS = st.one_of(
    st.integers(-3, 3).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(PLAIN, max_size=6),
)
FIELDS = st.one_of(CLEAN_FIELDS, st.sampled_from(ODD_FIELDS))
NAMES = st.one_of(
    st.sampled_from(["y", "y", "x", "x", "", "Y", "y ", '"y"', "é"]), st.text(PLAIN, max_size=4)
)


_sometimes = st.integers(0, 3).map(lambda i: i == 0)  # a quarter of the files


@st.composite
def csv_files(draw):
    """CSVs that go wrong in the ways real ones do: ragged rows, stray quotes and NULs,
    invalid UTF-8, a BOM, repeated or missing columns, no rows at all."""
    header = draw(st.lists(NAMES, min_size=1, max_size=4))
    if draw(st.integers(0, 3)):  # mostly with the target
        header.append("y")
    width = len(header)
    n_rows = draw(st.integers(min_value=0, max_value=40))
    ragged = draw(_sometimes)
    fields = FIELDS if draw(_sometimes) else CLEAN_FIELDS
    rows = []
    for i in range(n_rows):
        n = draw(st.integers(max(0, width - 1), width + 1)) if ragged else width
        rows.append([str(i % 2) if c == "y" else draw(fields) for c in [*header, "_"][:n]])
    if draw(st.booleans()):  # as written by hand: quotes and commas in fields left bare
        text = "\n".join(",".join(row) for row in [header, *rows])
    else:  # as a CSV writer quotes them (a newline inside quotes stays unreadable)
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows([header, *rows])
        text = out.getvalue()
    data = text.encode("utf-8")
    if draw(_sometimes):  # invalid UTF-8 somewhere
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])) + data[at:]
    if draw(_sometimes):
        data = b"\xef\xbb\xbf" + data
    if draw(_sometimes):
        data = data[: max(0, len(data) - draw(st.integers(1, 200)))]  # cut short
    return data


@settings(FUZZ, max_examples=80)
@given(csv_files(), st.sampled_from(["binary", "multiclass", "regression"]))
def test_broken_csv_files_validate_or_raise_an_mlsd_error(content, task):
    check_data(content, task=task)


@FUZZ
@given(st.binary(max_size=300), st.sampled_from(["data.csv", "data.parquet", "data.tsv"]))
def test_random_bytes_validate_or_raise_an_mlsd_error(content, name):
    check_data(content, name)


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


VALID_PARQUET = _parquet(
    pa.table({"x": [i * 0.5 for i in range(60)], "y": [i % 2 for i in range(60)]})
)


@settings(FUZZ, max_examples=40)
@given(
    st.integers(min_value=0, max_value=len(VALID_PARQUET)),
    st.lists(st.tuples(st.integers(0, len(VALID_PARQUET) - 1), st.integers(0, 255)), max_size=3),
)
def test_truncated_or_corrupted_parquet_validates_or_raises(cut, flips):
    data = bytearray(VALID_PARQUET)
    for at, byte in flips:
        data[at] = byte
    check_data(bytes(data[: len(data) - cut] if cut else data), "data.parquet")


COLUMN_TYPES = {
    "nested list": pa.array([[i, i] for i in range(40)]),
    "struct": pa.array([{"a": i} for i in range(40)]),
    "binary, not UTF-8": pa.array([b"\xff%d" % i for i in range(40)]),
    "binary, UTF-8": pa.array([b"a%d" % (i % 3) for i in range(40)]),
    "year 9999 in seconds": pa.array([253370764800 - i for i in range(40)], pa.timestamp("s")),
    "time zone": pa.array(range(40), pa.timestamp("ms", tz="Asia/Kolkata")),
    "floats near the limit": pa.array([1e308, -1e308] * 20),
    "infinities": pa.array([math.inf, -math.inf, math.nan, 1.0] * 10),
    "all null": pa.nulls(40),
    "uint64 max": pa.array([2**64 - 1 - i for i in range(40)], pa.uint64()),
    "dictionary": pa.array(["a", "b"] * 20).dictionary_encode(),
    "duration": pa.array(range(40), pa.duration("s")),
    "time of day": pa.array(range(40), pa.time32("s")),
    "float16": pa.array([None] * 40, pa.float16()),
}


@pytest.mark.parametrize("kind", list(COLUMN_TYPES))
@pytest.mark.parametrize("as_target", [False, True])
def test_parquet_column_types_validate_or_raise(kind, as_target):
    values, other = COLUMN_TYPES[kind], pa.array([i % 2 for i in range(40)])
    table = pa.table({"x": other, "y": values} if as_target else {"x": values, "y": other})
    check_data(_parquet(table), "data.parquet")


@pytest.mark.parametrize(
    "content, says",
    [
        (b"", "Empty CSV file"),
        (b"x,y\n", "has no rows"),
        (b"x,y\n1,0\n2,1,3\n", "Expected 2 columns, got 3"),
        (b"x,x,y\n1,2,0\n", "more than one column named 'x'"),
        (b"x,y\n\xff,0\n2,1\n", "column 'x' is not UTF-8 text (data row 1"),
        (b"\xffx,y\n1,0\n", "the header is not UTF-8"),
        (b'x,y\n"' + b"a" * 3_000_000 + b",0\n", "unclosed quote"),
    ],
)
def test_bad_csv_names_the_file_and_what_is_wrong(tmp_path, content, says):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    (tmp_path / "system.yaml").write_text(SPEC.format(source="bad.csv", task="binary"))
    spec = load_spec(tmp_path)
    with pytest.raises(DataError) as info:
        read_source(spec.data.source, spec.base_dir)
    assert str(path) in str(info.value) and says in str(info.value)


def test_a_missing_target_column_is_a_blocking_finding_not_a_crash():
    report = check_data(b"x,z\n" + b"".join(b"%d,%d\n" % (i, i % 2) for i in range(30)))
    assert report is not None and not report.passed
    assert any(a.check == "missing_column" and a.column == "y" for a in report.anomalies)
