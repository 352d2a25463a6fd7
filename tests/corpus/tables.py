"""Real tables that ship inside installable packages, for the corpus test.

Every table loads from a file inside an installed wheel (scikit-learn, statsmodels,
palmerpenguins, vega_datasets, river), never from the network, so the corpus runs offline.
Nothing is copied into this repository: each `load()` reads the package's own file.

The data are kept as a user would get them: column names, codes and missing values are the
package's. The only changes are a derived target where the package ships none that fits (said
in `why`), dropping the column(s) that target is computed from, and a seeded sample of at most
`max_rows` rows for the big tables (rows keep their original order, so tables with a time
column stay in time order).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import pandas as pd

Task = Literal["binary", "multiclass", "regression"]

SEED = 20240607
MAX_ROWS = 5_000


@dataclass(frozen=True)
class Table:
    """One real table: what to predict in it, and how to load it from its package."""

    name: str
    task: Task
    target: str
    loader: Callable[[], pd.DataFrame]
    why: str
    time: tuple[str, ...] = ()
    entity: str | None = None
    max_rows: int | None = None

    def load(self) -> pd.DataFrame:
        """The table as a DataFrame, sampled to `max_rows` (seeded, original row order kept)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # packages' deprecation noise, not the data's
            frame = self.loader()
        if self.max_rows is not None and len(frame) > self.max_rows:
            frame = frame.sample(n=self.max_rows, random_state=SEED).sort_index()
        return frame.reset_index(drop=True)


# --- scikit-learn: the sets in the wheel (load_*), never fetch_* ---------------------------


def _breast_cancer() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.drop(columns="target")
    frame["diagnosis"] = bunch.target_names[bunch.target.to_numpy()]
    return frame


def _wine() -> pd.DataFrame:
    from sklearn.datasets import load_wine

    return load_wine(as_frame=True).frame


def _digits() -> pd.DataFrame:
    from sklearn.datasets import load_digits

    return load_digits(as_frame=True).frame


def _diabetes() -> pd.DataFrame:
    from sklearn.datasets import load_diabetes

    return load_diabetes(as_frame=True, scaled=False).frame


# --- statsmodels.datasets -----------------------------------------------------------------


def _statsmodels(name: str) -> pd.DataFrame:
    import importlib

    return importlib.import_module(f"statsmodels.datasets.{name}").load_pandas().data


def _fair() -> pd.DataFrame:
    frame = _statsmodels("fair")
    frame["had_affair"] = (frame.pop("affairs") > 0).astype(int)
    return frame


def _anes96() -> pd.DataFrame:
    return _statsmodels("anes96")


def _modechoice() -> pd.DataFrame:
    return _statsmodels("modechoice")


def _randhie() -> pd.DataFrame:
    return _statsmodels("randhie")


def _star98() -> pd.DataFrame:
    frame = _statsmodels("star98")
    above, below = frame.pop("NABOVE"), frame.pop("NBELOW")
    frame["share_above"] = above / (above + below)
    return frame


def _grunfeld() -> pd.DataFrame:
    return _statsmodels("grunfeld")


# --- palmerpenguins, vega_datasets (local files only) -------------------------------------


def _penguins() -> pd.DataFrame:
    from palmerpenguins import load_penguins

    return load_penguins()


def _seattle_weather() -> pd.DataFrame:
    from vega_datasets import local_data

    return local_data.seattle_weather()


def _cars() -> pd.DataFrame:
    from vega_datasets import local_data

    return local_data.cars()


# --- river: the files bundled in its wheel (FileDataset.path), read as the CSV they are ----


def _river(name: str) -> pd.DataFrame:
    from river import datasets

    return pd.read_csv(getattr(datasets, name)().path)


TABLES: list[Table] = [
    # binary
    Table(
        name="breast_cancer",
        task="binary",
        target="diagnosis",
        loader=_breast_cancer,
        why="scikit-learn load_breast_cancer: UCI Breast Cancer Wisconsin (Diagnostic), "
        "CC BY 4.0. The 0/1 target is mapped to its own names (malignant/benign) so that "
        "'malignant' is the class to find, not 1 = benign.",
    ),
    Table(
        name="fair",
        task="binary",
        target="had_affair",
        loader=_fair,
        max_rows=MAX_ROWS,
        why="statsmodels fair: Fair (1978), Redbook survey, 6,366 women; 'included with "
        "permission of the author'. Derived target had_affair = affairs > 0 (32% positive); "
        "affairs itself is dropped. All features are survey codes (numbers).",
    ),
    Table(
        name="anes96",
        task="binary",
        target="vote",
        loader=_anes96,
        why="statsmodels anes96: American National Election Studies 1996, public domain. "
        "vote 0 = Clinton, 1 = Dole. logpopul is log(popul + 0.1), as shipped.",
    ),
    Table(
        name="modechoice",
        task="binary",
        target="choice",
        loader=_modechoice,
        entity="individual",
        why="statsmodels modechoice: Greene & Hensher travel mode choice, public domain. "
        "Long format: one row per (traveller, mode), choice = 1 on the mode taken; 'mode' "
        "is a 1-4 code (air, train, bus, car), 210 travellers with 4 rows each.",
    ),
    Table(
        name="phishing",
        task="binary",
        target="is_phishing",
        loader=lambda: _river("Phishing"),
        why="river Phishing (bundled phishing.csv.gz, BSD-3 package): UCI Website Phishing, "
        "CC BY 4.0. Features are -1/0/1 style codes scaled to 0/0.5/1.",
    ),
    Table(
        name="shuttle",
        task="binary",
        target="anomaly",
        loader=lambda: _river("Shuttle"),
        max_rows=MAX_ROWS,
        why="river Shuttle (bundled shuttle.csv.gz, BSD-3 package): UCI Statlog Shuttle, "
        "CC BY 4.0, cast as anomaly detection (ODDS): 49,097 rows, 7% anomalies; "
        "sampled to 5,000.",
    ),
    # multiclass
    Table(
        name="wine",
        task="multiclass",
        target="target",
        loader=_wine,
        why="scikit-learn load_wine: UCI Wine, CC BY 4.0. 3 cultivars coded 0/1/2, 178 rows.",
    ),
    Table(
        name="digits",
        task="multiclass",
        target="target",
        loader=_digits,
        why="scikit-learn load_digits: UCI Optical Recognition of Handwritten Digits, "
        "CC BY 4.0. 10 classes coded 0-9, 64 pixel counts (several always 0).",
    ),
    Table(
        name="penguins",
        task="multiclass",
        target="species",
        loader=_penguins,
        why="palmerpenguins: Gorman, Williams & Fraser (2014), Palmer Station LTER, CC0. "
        "String columns (island, sex) and missing values (sex 11, measurements 2).",
    ),
    Table(
        name="seattle_weather",
        task="multiclass",
        target="weather",
        loader=_seattle_weather,
        time=("date",),
        why="vega_datasets local seattle-weather (MIT package): NOAA daily weather in "
        "Seattle 2012-2015, public domain. String target with rare classes (snow 23, "
        "drizzle 54 of 1,461) whose coding drifts by year (rain: 191 days in 2012, 5 in "
        "2015, fog and sun take its place), as shipped.",
    ),
    Table(
        name="image_segments",
        task="multiclass",
        target="category",
        loader=lambda: _river("ImageSegments"),
        why="river ImageSegments (bundled segment.csv.zip, BSD-3 package): UCI Statlog "
        "Image Segmentation, CC BY 4.0. 7 string classes, 2,310 rows.",
    ),
    # regression
    Table(
        name="diabetes",
        task="regression",
        target="target",
        loader=_diabetes,
        why="scikit-learn load_diabetes(scaled=False): Efron et al. (2004), shipped with "
        "scikit-learn (BSD-3). Disease progression one year after baseline, 442 patients.",
    ),
    Table(
        name="randhie",
        task="regression",
        target="mdvis",
        loader=_randhie,
        max_rows=MAX_ROWS,
        why="statsmodels randhie: RAND Health Insurance Experiment, public domain. Number "
        "of outpatient doctor visits (a skewed count) from plan and health; 20,190 rows, "
        "sampled to 5,000.",
    ),
    Table(
        name="star98",
        task="regression",
        target="share_above",
        loader=_star98,
        why="statsmodels star98: Gill, California STAR 1998 test results by district; "
        "'used with express permission of the author, who retains all rights' (read from "
        "the installed package, never copied). Derived target share_above = NABOVE / "
        "(NABOVE + NBELOW); both counts are dropped. Interaction columns are as shipped.",
    ),
    Table(
        name="cars",
        task="regression",
        target="Miles_per_Gallon",
        loader=_cars,
        time=("Year",),
        why="vega_datasets local cars (MIT package): StatLib Auto MPG (Donoho & Ramos "
        "1982). Model year as time, string Name (near-unique) and Origin, 8 rows with a "
        "missing target and 6 with missing Horsepower, as shipped.",
    ),
    Table(
        name="grunfeld",
        task="regression",
        target="invest",
        loader=_grunfeld,
        time=("year",),
        why="statsmodels grunfeld: Grunfeld (1950) investment panel, 11 firms x 20 years "
        "(1935-1954), public domain. String firm column, year as time.",
    ),
    Table(
        name="chick_weights",
        task="regression",
        target="weight",
        loader=lambda: _river("ChickWeights"),
        time=("time",),
        entity="chick",
        why="river ChickWeights (bundled chick-weights.csv, BSD-3 package): Crowder & Hand "
        "(1990), R's ChickWeight. Weight by day (time, 0-21) of 50 chicks on 4 diets "
        "(diet is a 1-4 code).",
    ),
    Table(
        name="trump_approval",
        task="regression",
        target="five_thirty_eight",
        loader=lambda: _river("TrumpApproval"),
        time=("ordinal_date",),
        why="river TrumpApproval (bundled trump_approval.csv.gz, BSD-3 package): "
        "FiveThirtyEight approval data (CC BY 4.0). The aggregate from five pollsters' "
        "latest numbers, daily; time is a proleptic ordinal day number.",
    ),
]

BY_NAME: dict[str, Table] = {table.name: table for table in TABLES}
