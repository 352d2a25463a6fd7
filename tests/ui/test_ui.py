"""`mlsd ui` in a real browser (Debian's Chromium driven by Playwright): a workspace built
here (a churn model's two versions, drifted traffic monitored, a canary running; a
recommender funnel) shown on every page, the content asserted, each page checked by
axe-core and saved as a screenshot. The A/B test's and the bandit's charts are drawn from
decisions made of the rollout's own statistics."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsd.models.train import train
from mlsd.monitoring.monitor import monitor
from mlsd.predlog.writer import PredictionLog
from mlsd.recsys import package as recommenders
from mlsd.recsys.train import train_funnel
from mlsd.rollout import controller, stats
from mlsd.rollout.bandit import ips, thompson_weights
from mlsd.serving.model import load_served
from mlsd.spec import load_spec
from mlsd.workspace import Workspace

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(
    os.environ.get("MLSD_SCREENSHOTS", Path(__file__).resolve().parents[2] / ".screenshots")
)
DAY = 86400.0
START = 1_750_000_000.0 - 1_750_000_000.0 % DAY


def frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tenure = rng.normal(24 + shift, 6, n)
    spend = rng.gamma(2.0, 30.0, n)
    plan = rng.choice(["basic", "plus", "pro"], n)
    churned = (40 - tenure + spend / 20 + (plan == "basic") * 5 + rng.normal(0, 5, n)) > 20
    return pd.DataFrame({"tenure": tenure, "spend": spend, "plan": plan,
                         "churned": np.where(churned, "yes", "no")})  # fmt: skip


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Two versions of a churn model; four days of traffic, the last two shifted, with
    labels; monitored; a canary of version 2 running."""
    folder = tmp_path_factory.mktemp("ui")
    frame(1500, 0).to_csv(folder / "data.csv", index=False)
    (folder / "system.yaml").write_text(
        "name: churn\nproblem: {task: binary, target: churned, positive_class: 'yes'}\n"
        "data: {source: data.csv, columns: {plan: categorical}}\n"
        "models: {candidates: [linear]}\n"
        "monitoring: {window: 1d, min_rows: 100, log_to_mlflow: false}\n"
        "rollout: {canary: {steps: [20, 50, 100]}}\n"
    )
    spec = load_spec(folder / "system.yaml")
    for _ in range(2):
        assert train(spec, progress=False).registered
    ws = Workspace.for_spec(spec)
    served = load_served(ws.root, spec.name, "champion", spec.serving)
    with PredictionLog(ws) as log:
        for day in range(4):
            rows = frame(300, 10 + day, shift=25.0 if day >= 2 else 0.0)
            X = rows.drop(columns=["churned"])
            answers = served.predict({c: X[c].tolist() for c in X.columns})
            for r in range(0, 300, 50):
                rid = f"d{day}-{r}"
                log.prediction(request_id=rid, model_version="1",
                               inputs=X.iloc[r:r + 50].to_dict("records"),
                               outputs=answers[r:r + 50], latency_ms=2.0,
                               ts=START + day * DAY + r)  # fmt: skip
                for k in range(50):
                    log.feedback(request_id=rid, instance=k, label=rows["churned"].iloc[r + k],
                                 ts=START + day * DAY + r + 60)  # fmt: skip
    monitor(spec, ws, now=START + 5 * DAY)
    controller.start(spec, ws, ["2"], "canary")
    return ws.root


@pytest.fixture(scope="module")
def recommender(workspace):
    """A recommender funnel in the same workspace, on the e2e tests' clustered interactions
    (small: trained in about 3 s); its champion's package, loaded."""
    e2e = str(Path(__file__).resolve().parents[1] / "e2e")
    sys.path.insert(0, e2e)
    try:
        from test_recommend import clustered
    finally:
        sys.path.remove(e2e)

    folder = workspace.parent
    frame, *_ = clustered(users=120, items=80)
    frame.to_csv(folder / "interactions.csv", index=False)
    (folder / "recs.yaml").write_text(
        "name: recs\nproblem: {task: ranking, id: user, target: item, time: ts}\n"
        "architecture: {kind: funnel, generators: [popularity, itemknn, ease], candidates: 20}\n"
        "data: {source: interactions.csv}\n"
    )
    spec = load_spec(folder / "recs.yaml")
    assert Workspace.for_spec(spec).root == workspace
    trained = train_funnel(spec, progress=False)
    assert trained.registered and trained.chosen == "funnel", trained.reason
    return recommenders.load(trained.package).recommender


@pytest.fixture(scope="module")
def ui(workspace, recommender):
    """`mlsd ui` on a free port, started and stopped here."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    script = Path(sys.executable).with_name("mlsd")
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(script), "ui", "--workspace", str(workspace), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    while time.monotonic() - started < 30:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1)
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.communicate()) from None
            time.sleep(0.05)
    ready_s = time.monotonic() - started
    yield url, ready_s
    proc.terminate()
    proc.communicate(timeout=20)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make test installs it when it can)")
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def visit(browser, url: str, name: str):
    """The page at ``url``, checked by axe-core (no violation) and saved as a screenshot."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    response = page.goto(url)
    assert response.status == 200
    return checked(page, name)


def checked(page, name: str):
    """``page`` saved as a screenshot and checked by axe-core (no violation)."""
    from axe_playwright_python.sync_playwright import Axe

    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    result = Axe().run(page)
    assert result.violations_count == 0, result.generate_report()
    return page


def test_it_starts_quickly(ui):
    _, ready_s = ui
    assert ready_s < 2.0  # the process and its first answer, the CLI's imports included


def test_the_systems_page_shows_the_champion_the_alert_and_the_rollout(ui, browser):
    url, _ = ui
    page = visit(browser, url + "/", "systems")
    row = page.get_by_role("row", name="churn")
    text = row.inner_text()
    assert "v1 (linear)" in text  # the champion
    assert "drift_alert" in text or "alert" in text  # the latest alert
    assert "canary of v2: running" in text  # the rollout
    page.get_by_role("link", name="churn").click()
    assert page.get_by_role("heading", level=1).inner_text() == "churn"


def test_the_system_page_shows_models_rollout_monitoring_and_alerts(ui, browser):
    url, _ = ui
    page = visit(browser, url + "/systems/churn", "system")
    versions = page.get_by_role("table", name="Registered versions").inner_text()
    assert "champion" in versions and "challenger" in versions
    history = page.get_by_role("table", name="Champion history and the reason for each change")
    assert "rollout_started" in history.inner_text()
    main = page.locator("main").inner_text()
    assert "canary of v2: running (challenger 20%, champion 80%)" in main  # its shares
    windows = page.get_by_role("table", name="Windows of version 1").inner_text()
    assert "tenure" in windows  # the drifted feature, by name
    chart = page.get_by_role("img", name="Drift distance", exact=False)
    assert chart.count() >= 1 and "tenure" in chart.first.inner_html()
    alerts = page.get_by_role("table", name="Latest alerts, newest first").inner_text()
    assert "tenure" in alerts
    assert "run " in versions  # each version's training run, linked to MLflow's own UI
    link = page.get_by_role("link", name="run ", exact=False).first.get_attribute("href")
    assert link.startswith("http://127.0.0.1:5000/#/experiments/")
    page.get_by_text("problem", exact=True).click()  # the spec, section by section
    assert "step 1, problem formulation" in page.locator("main").inner_text()
    section = page.locator("details", has_text="step 1, problem formulation")
    assert "positive_class: 'yes'" in section.inner_text()  # opened by the click
    board = page.get_by_role("table", name="Latest training: baselines and candidates, by roc_auc")
    assert "baseline" in board.inner_text() and "chosen" in board.inner_text()


def test_reports_are_linked_and_nothing_else_is_reachable(ui, browser):
    url, _ = ui
    page = browser.new_page()
    page.goto(url + "/systems/churn")
    page.get_by_role("link", name="evaluation of v2").click()  # the version's own report
    assert page.url.endswith("/systems/churn/versions/2/evaluation.html")
    assert "roc" in page.content().lower()
    page.goto(url + "/systems/churn")
    page.get_by_role("link", name="monitoring.html").click()
    assert "monitor" in page.title().lower() or page.locator("h1").count()
    for bad in ("/systems/churn/reports/..%2F..%2Fmlflow.db", "/systems/nope",
                "/systems/churn/reports/validation.json"):  # fmt: skip
        assert page.goto(url + bad).status == 404


def test_the_rollout_statistic_is_drawn_with_its_band():
    from mlsd.ui.rollout_view import _statistic

    history = [
        {"evidence": {"non_inferiority": {"metric": "log_loss", "difference": d,
                                          "ci_low": d - w, "ci_high": d + w}}}
        for d, w in ((-0.02, 0.05), (-0.015, 0.03), (-0.01, 0.02))
    ]  # fmt: skip
    svg = _statistic(history)
    assert "<polygon" in svg  # the interval, shaded
    assert "Difference in log_loss" in svg and "-0.015" in svg  # described for screen readers
    assert "no decision" in _statistic([{"evidence": {}}])


def test_a_recommender_links_to_its_explorer(ui, browser):
    url, _ = ui
    page = visit(browser, url + "/systems/recs", "recs")
    page.get_by_role("link", name="Explore the recommendations of a user").click()
    assert page.url.endswith("/systems/recs/explore")
    assert page.get_by_role("heading", level=1).inner_text() == "recs: a user's recommendations"
    assert browser.new_page().goto(url + "/systems/churn/explore").status == 404


def test_the_explorer_shows_a_users_history_candidates_scores_and_list(ui, browser, recommender):
    url, _ = ui
    page = visit(browser, url + "/systems/recs/explore", "explore-form")
    user = page.locator("#known-users option").first.get_attribute("value")
    page.get_by_label("User id").fill(user)
    page.get_by_role("button", name="Explain").click()  # a plain GET form
    assert page.url.endswith(f"/systems/recs/explore?user={user}")
    page = checked(page, "explore")
    history = page.get_by_role("table", name=f"History of user {user}").inner_text()
    assert recommender.explain(user)["history"][0] in history
    final = page.get_by_role("table", name=f"Final list of user {user}")
    rows = final.locator("tbody tr").all_inner_texts()
    want = recommender.recommend([user])[0]["items"]
    assert [r.split("\t")[1] for r in rows] == [i["item"] for i in want]
    proposals = page.get_by_role("table", name="Proposals of itemknn").inner_text()
    assert "listed" in proposals  # which candidates made the list
    ranked = page.get_by_role("table", name="The ranker's score of each", exact=False)
    assert f"{want[0]['item']}\t{want[0]['score']:.4g}" in ranked.inner_text()


def test_an_unknown_user_is_a_cold_start(ui, browser, recommender):
    url, _ = ui
    page = visit(browser, url + "/systems/recs/explore?user=nobody-here", "explore-cold")
    assert "User nobody-here is unknown: a cold start" in page.locator("main").inner_text()
    final = page.get_by_role("table", name="Final list of user nobody-here").inner_text()
    assert recommender.recommend(["nobody-here"])[0]["items"][0]["item"] in final
    assert page.get_by_role("table", name="Proposals of popularity").count() == 1


def test_monitoring_charts_quality_and_latency_per_window(ui, browser):
    url, _ = ui
    page = browser.new_page()
    page.goto(url + "/systems/churn")
    realised = page.get_by_role("img", name="Realised roc_auc on the labelled rows", exact=False)
    assert "offline test" in realised.inner_html()
    assert page.get_by_role("img", name="Accuracy per window, estimated", exact=False).count()
    latency = page.get_by_role("img", name="Latency p99 per window (version 1)", exact=False)
    assert "budget" in latency.inner_html()


def ab_test() -> dict:
    """An A/B test's experiment after three decisions, from the rollout's own mSPRT."""
    history = []
    for n in (2000, 8000, 32000):
        control, test = stats.Sample(n, 0.10, 0.09), stats.Sample(n, 0.125, 0.109)
        result = stats.msprt(control, test, tau=0.02, alpha=0.05)
        evidence = {"units": {"challenger": n, "champion": n},
                    "srm": stats.srm([n, n], [0.5, 0.5]).to_dict(),
                    "metrics": {"ctr": result.to_dict()}}  # fmt: skip
        history.append({"action": "hold", "evidence": evidence, "waiting_for": ["ctr"],
                        "weights": {"challenger": 0.5, "champion": 0.5}})  # fmt: skip
    return {"id": "ab", "strategy": "ab", "status": "running", "history": history,
            "weights": history[-1]["weights"], "challengers": [{"version": 2}]}  # fmt: skip


def bandit() -> dict:
    """A bandit over three arms after four decisions: Thompson sampling's shares, each arm's
    rewards and the off-policy estimates, as the rollout computes them."""
    rng, names, rates = np.random.default_rng(0), ["champion", "v2", "v3"], [0.10, 0.16, 0.07]
    shares, arms, rewards, chances, history = np.full(3, 1 / 3), [], [], [], []

    def named(values: list) -> dict:
        return dict(zip(names, values, strict=True))

    for _ in range(4):
        served = rng.choice(3, 400, p=shares)
        arms += served.tolist()
        rewards += (rng.random(400) < np.take(rates, served)).tolist()
        chances += shares[served].tolist()
        a, r = np.array(arms), np.array(rewards, dtype=float)
        samples = [stats.Sample.of(r[a == k]) for k in range(3)]
        estimates = ips(a, r, np.array(chances), 3)
        best = thompson_weights(samples, floor=0.0, bernoulli=True)
        shares = thompson_weights(samples, floor=0.2, bernoulli=True)
        evidence = {
            "reward": "ctr",
            "arms": named([s.to_dict() for s in samples]),
            "ips": {names[e.arm]: e.to_dict() for e in estimates},
            "p_best": named(best.tolist()),
        }
        weights = named(shares.tolist())
        history.append({"action": "reweight", "evidence": evidence, "weights": weights})
    return {"id": "bandit", "strategy": "bandit", "status": "running", "history": history,
            "weights": weights, "challengers": [{"version": 2}, {"version": 3}]}  # fmt: skip


@pytest.mark.parametrize("experiment", [ab_test, bandit])
def test_the_ab_and_bandit_statistics_are_charted(browser, experiment):
    from mlsd.ui.pages import page as whole_page
    from mlsd.ui.rollout_view import rollout_section

    tab = browser.new_page(viewport={"width": 1280, "height": 900})
    tab.set_content(whole_page(experiment.__name__, rollout_section(experiment())))
    checked(tab, f"rollout-{experiment.__name__}")
    shares = tab.get_by_role("img", name="Traffic share of each arm", exact=False).inner_html()
    if experiment is ab_test:
        chart = tab.get_by_role("img", name="Difference in ctr, challenger minus champion")
        assert "<polygon" in chart.inner_html() and "no difference" in chart.inner_html()
        assert "32,000" in tab.get_by_role("table", name="Arms at the last decision").inner_text()
    else:
        chart = tab.get_by_role("img", name="Reward (ctr", exact=False)
        assert chart.inner_html().count("<polygon") == 3  # each arm's interval
        assert all(arm in chart.inner_html() and arm in shares for arm in ("v2", "v3"))
        arms = tab.get_by_role("table", name="Arms at the last decision").inner_text()
        assert "P(best)" in arms and "v3" in arms


def test_a_recommenders_monitoring_windows_are_charted():
    from mlsd.ui.monitoring_view import _performance

    windows = [{"hit_rate@10": h, "ctr@10": h / 8, "latency": {"p99_ms": 4.0, "budget_ms": 50}}
               for h in (0.31, 0.28, 0.22)]  # fmt: skip
    svg = _performance("3", windows, ["d1", "d2", "d3"])
    assert "Hit rate and click-through of the served lists" in svg and "ctr@10" in svg
    assert "Latency p99 per window (version 3)" in svg and "budget 50" in svg
