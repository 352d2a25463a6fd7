"""MovieLens 100k as a ranking table: each user's rated movies, ordered by the rating.

The data (GroupLens, https://grouplens.org/datasets/movielens/100k/) ships inside the
``recbole`` wheel (``recbole/dataset_example/ml-100k/``, tab-separated atomic files with
typed headers such as ``user_id:token``). Its licence forbids redistribution, so mlsd never
copies it into the repository: :func:`write_ranking_table` finds the files in the installed
package, without importing it (recbole imports torch), and writes the table where asked.

One row per (user, rated movie): the group is ``user_id``, the relevance ``rating`` (1-5),
the time ``timestamp`` (Unix seconds). Features: the user's age, gender and occupation; the
movie's release year and genre flags; and what the service knew of the movie *when the
rating was given*: ``popularity``, the number of earlier ratings of the movie, and
``prior_mean_rating``, their mean (missing for a movie's first ratings). Of the user, from
their own earlier ratings: ``user_prior_ratings``, how many, and ``user_genre_affinity``, the
mean of their earlier ratings of this movie's genres (a movie counted once per genre it
shares) minus the mean of all their earlier ratings (missing without such a rating). Counting all 100,000 ratings instead would tell every row about ratings given
after it: a leak of the future that a time split cannot undo, since the column itself holds
it. Ratings given in the same second count as simultaneous: none is earlier than another.
"""

from __future__ import annotations

import importlib.util
import site
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mlsd.errors import DataError

RECBOLE = "recbole==1.2.1"
INSTALL = f"python -m pip install --no-deps {RECBOLE}"
FILES = ("inter", "user", "item")
GENRES = (
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)


def _genre_column(genre: str) -> str:
    return "genre_" + genre.lower().replace("'", "").replace("-", "_")


def _candidates() -> list[Path]:
    """Folders that may hold recbole's ml-100k files: the installed package's (found
    without importing it), then every site-packages folder and sys.path entry."""
    found = []
    spec = importlib.util.find_spec("recbole")  # a top-level spec: recbole is not imported
    if spec is not None:
        found += [Path(p) for p in spec.submodule_search_locations or []]
    roots = [*site.getsitepackages(), site.getusersitepackages(), *sys.path]
    found += [Path(root) / "recbole" for root in roots if root]
    return [p / "dataset_example" / "ml-100k" for p in found]


def find_ml100k() -> Path:
    """The folder holding ``ml-100k.inter``, ``.user`` and ``.item``; DataError with the
    pip command when recbole is not installed."""
    for folder in _candidates():
        if all((folder / f"ml-100k.{name}").is_file() for name in FILES):
            return folder
    raise DataError(
        "MovieLens 100k not found — it ships inside the recbole package, which is not "
        "installed in this Python (" + sys.executable + ")",
        hint=f"install it without its dependencies (torch is not needed): {INSTALL}",
    )


def read_atomic(path: Path) -> pd.DataFrame:
    """A RecBole atomic file: tab-separated, headers ``name:type``; token columns as text,
    float columns as numbers."""
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_values=[""])
    names = {}
    for column in frame.columns:
        name, _, kind = column.partition(":")
        names[column] = name
        if kind == "float":
            frame[column] = pd.to_numeric(frame[column])
    return frame.rename(columns=names)


def tables(folder: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The three files as typed tables: ratings (user_id, item_id, rating, timestamp), users
    (user_id, age, gender, occupation) and movies (item_id, title, release_year, n_genres
    and a 0/1 flag per genre)."""
    folder = folder or find_ml100k()
    inter = read_atomic(folder / "ml-100k.inter")
    users = read_atomic(folder / "ml-100k.user")
    items = read_atomic(folder / "ml-100k.item")
    inter["user_id"] = inter["user_id"].astype(np.int64)
    inter["item_id"] = inter["item_id"].astype(np.int64)
    inter["rating"] = inter["rating"].astype(np.int64)
    inter["timestamp"] = inter["timestamp"].astype(np.int64)

    users = pd.DataFrame(
        {
            "user_id": users["user_id"].astype(np.int64),
            "age": pd.to_numeric(users["age"]).astype(np.int64),
            "gender": users["gender"],
            "occupation": users["occupation"],
        }
    )
    genres = items["class"].fillna("").str.split()
    movies = pd.DataFrame(
        {
            "item_id": items["item_id"].astype(np.int64),
            "release_year": pd.to_numeric(items["release_year"], errors="coerce").astype("Int64"),
            "n_genres": genres.map(lambda g: len([x for x in g if x != "unknown"])),
        }
    )
    for genre in GENRES:
        movies[_genre_column(genre)] = genres.map(lambda g, genre=genre: genre in g).astype(np.int8)
    movies.insert(1, "title", items["movie_title"])
    return inter, users, movies


def ranking_table(folder: Path | None = None) -> pd.DataFrame:
    """The ranking table (one row per rating, sorted by user then time); see the module
    docstring for its columns."""
    inter, users, movies = tables(folder)
    movies = movies.drop(columns="title")

    # what was known of each movie when the rating was given: strictly earlier ratings only
    log = inter.sort_values(["item_id", "timestamp"], kind="stable")
    by_item = log.groupby("item_id", sort=False)
    before = by_item["timestamp"].rank(method="min").astype(np.int64) - 1
    earlier_sum = by_item["rating"].cumsum() - log["rating"]
    earlier_sum = earlier_sum.groupby([log["item_id"], log["timestamp"]]).transform("min")
    log = log.assign(
        popularity=before,
        prior_mean_rating=(earlier_sum / before.where(before > 0)).round(4),
    )

    table = log.merge(users, on="user_id", how="left").merge(movies, on="item_id", how="left")
    table = table.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    table = table.reset_index(drop=True)
    table = table.assign(**_user_history(table))
    columns = [
        "user_id",
        "item_id",
        "timestamp",
        "rating",
        "age",
        "gender",
        "occupation",
        "release_year",
        "n_genres",
        *[_genre_column(g) for g in GENRES],
        "popularity",
        "prior_mean_rating",
        "user_prior_ratings",
        "user_genre_affinity",
    ]
    return table[columns]


def _user_history(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """What each user's strictly earlier ratings say (rows sorted by user, then time)."""
    user, ratings = table["user_id"], table["rating"].to_numpy(dtype=np.float64)

    def earlier(values: np.ndarray) -> np.ndarray:
        # running sum before the row; rows of one second all take the first one's value
        series = pd.Series(values, index=table.index)
        total = series.groupby(user).cumsum() - series
        return total.groupby([user, table["timestamp"]]).transform("min").to_numpy()

    count = earlier(np.ones(len(table)))
    mean = earlier(ratings) / np.where(count > 0, count, np.nan)
    shared_sum, shared_count = np.zeros(len(table)), np.zeros(len(table))
    for genre in GENRES:
        flag = table[_genre_column(genre)].to_numpy(dtype=np.float64)
        shared_sum += flag * earlier(flag * ratings)
        shared_count += flag * earlier(flag)
    affinity = shared_sum / np.where(shared_count > 0, shared_count, np.nan) - mean
    return {"user_prior_ratings": count.astype(np.int64), "user_genre_affinity": affinity.round(4)}


def write_ranking_table(path: str | Path, folder: Path | None = None) -> Path:
    """Write :func:`ranking_table` to ``path`` (Parquet for ``.parquet``, else CSV) and
    return the path. The folder of the files is found with :func:`find_ml100k` unless given."""
    path = Path(path)
    table = ranking_table(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        table.to_parquet(path, index=False)
    else:
        table.to_csv(path, index=False)
    return path


def write_interactions(folder: str | Path, source: Path | None = None) -> list[Path]:
    """Write ``interactions.csv`` (every rating), ``users.csv`` and ``items.csv`` into
    ``folder``: a recommender's three tables, as :func:`tables` reads them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in zip(("interactions", "users", "items"), tables(source), strict=True):
        table.to_csv(folder / f"{name}.csv", index=False)
        written.append(folder / f"{name}.csv")
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m mlsd.datasets.movielens [PATH]``: write the ranking table (default: the
    MovieLens example's ``ratings.parquet``); ``--interactions FOLDER``: the recommender
    example's three tables (default: ``examples/movielens-recs``)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        if args and args[0] == "--interactions":
            target = Path(args[1]) if len(args) > 1 else Path("examples/movielens-recs")
            print("\n".join(map(str, write_interactions(target))))
            return 0
        target = Path(args[0]) if args else Path("examples/movielens/ratings.parquet")
        print(write_ranking_table(target))
    except DataError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
