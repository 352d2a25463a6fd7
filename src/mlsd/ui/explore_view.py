"""The dashboard's recommender explorer: a user's history beside the list the champion gives
them, the ranker's score of every candidate and each generator's proposals."""

from __future__ import annotations

from typing import Any

from mlsd.ui import state
from mlsd.ui.pages import esc, number, page, system_href, table

MAX_USERS_LISTED = 50  # the form's suggestions: the users with the longest histories


def _user_form(name: str, explorer: state.Explorer, user: str | None) -> str:
    """A GET form for a user id, suggesting known users (no script)."""
    rec = explorer.recommender
    lengths = rec.indptr[1:] - rec.indptr[:-1]
    busiest = sorted(range(len(rec.users)), key=lambda r: -lengths[r])[:MAX_USERS_LISTED]
    options = "".join(f'<option value="{esc(rec.users[r])}"></option>' for r in busiest)
    return (
        f'<form method="get" action="{system_href(name)}/explore">'
        '<label for="user">User id</label> '
        f'<input id="user" name="user" list="known-users" value="{esc(user or "")}" required> '
        f'<datalist id="known-users">{options}</datalist>'
        '<button type="submit">Explain</button></form>'
    )


def _listed(flag: bool) -> str:
    return '<span class="good">listed</span>' if flag else ""


def _items(caption: str, rows: list[dict[str, Any]], listed: set) -> str:
    """A list of items (``item``, ``score``, ``rank``) and whether each made the final list."""
    return table(
        caption,
        ["rank", "item", "score", "in the final list"],
        [
            [
                str(r["rank"]),
                esc(r["item"]),
                number(r["score"]),
                _listed(r["item"] in listed),
            ]
            for r in rows
        ],
    )


def explore_page(name: str, explorer: state.Explorer, user: str | None) -> str:
    """A recommender's champion explained for one user: their history beside the final
    list, the ranker's score of every candidate, and each generator's proposals."""
    from mlsd.recsys.runtime import FUNNEL

    rec = explorer.recommender
    generators = ", ".join(rec.generators) or "none"
    how = (
        f"the generators ({generators}) propose {rec.candidates} candidates each and the "
        f"ranker orders them"
        if rec.chosen == FUNNEL
        else f"one generator, {rec.chosen}, lists its best items"
    )
    body = (
        f"<p>The champion, v{explorer.version}, recommends {rec.k} items: {esc(how)}; a user "
        f"without history gets the most popular items. Its {len(rec.users):,} users and "
        f"{len(rec.items):,} items are those it was trained on.</p>"
        + _user_form(name, explorer, user)
    )
    if user:
        body += _explained(rec.explain(explorer.user(user)))
    crumbs = [("/", "systems"), (system_href(name), name)]
    return page(f"{name}: a user's recommendations", body, crumbs=crumbs)


def _explained(found: dict[str, Any]) -> str:
    """The tables of :meth:`Recommender.explain`'s answer."""
    user, final = found["user"], found["final"]
    listed = {i["item"] for i in final}
    if found["cold_start"]:
        why = "is unknown" if not found["known"] else "has no history"
        note = (
            f'<p class="bad">User {esc(user)} {why}: a cold start. They get the fallback, '
            f"{esc(found['stage'])}: the most popular items.</p>"
        )
    else:
        note = f"<p>User {esc(user)}: {len(found['history'])} items in their history.</p>"
    history = table(
        f"History of user {user}",
        ["#", "item"],
        [[str(n), esc(item)] for n, item in enumerate(found["history"], 1)],
    )
    answer = table(
        f"Final list of user {user}",
        ["rank", "item", "score", "stage"],
        [
            [str(n), esc(i["item"]), number(i["score"]), esc(i["stage"])]
            for n, i in enumerate(final, 1)
        ],
    )
    parts = [note, f'<div class="side"><div>{history}</div><div>{answer}</div></div>']
    if found["ranker"] is not None:
        parts.append("<h2>The ranker</h2>")
        parts.append(
            table(
                f"The ranker's score of each of the {len(found['ranker'])} candidates, best first",
                ["rank", "item", "ranker's score", "proposed by (rank)", "in the final list"],
                [
                    [
                        str(n),
                        esc(c["item"]),
                        number(c["score"]),
                        esc(", ".join(f"{g} ({r})" for g, r in c["ranks"].items())),
                        _listed(c["listed"]),
                    ]
                    for n, c in enumerate(found["ranker"], 1)
                ],
            )
        )
    parts.append("<h2>The candidates of each generator</h2>")
    tables = [
        _items(f"Proposals of {generator}", proposals, listed)
        for generator, proposals in found["generators"].items()
    ]
    parts.append('<div class="side">' + "".join(f"<div>{t}</div>" for t in tables) + "</div>")
    return "".join(parts)
