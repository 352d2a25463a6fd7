"""``mlsd ui``: the dashboard over one workspace, read-only, served by uvicorn."""

from __future__ import annotations

from pathlib import Path

from mlsd.errors import MlsdError
from mlsd.ui import explore_view, state, views


def create_app(root: Path, mlflow_url: str = "http://127.0.0.1:5000"):
    """The dashboard's FastAPI app over the workspace folder ``root``; ``mlflow_url`` is
    where the links to MLflow's own UI point."""
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import FileResponse, HTMLResponse

    root = Path(root).resolve()
    app = FastAPI(title="mlsd ui", docs_url=None, redoc_url=None, openapi_url=None)

    def known(name: str) -> str:
        if name not in state.systems(root):
            raise HTTPException(404, f"no system {name!r} in {root}")
        return name

    @app.get("/", response_class=HTMLResponse)
    def systems() -> str:
        return views.systems_page(root)

    @app.get("/systems/{name}", response_class=HTMLResponse)
    def system(name: str) -> str:
        return views.system_page(root, known(name), mlflow_url)

    @app.get("/systems/{name}/explore", response_class=HTMLResponse)
    def explore(name: str, user: str | None = None) -> str:
        try:
            explorer = state.explorer(root, known(name))
        except MlsdError as exc:  # the champion's package failed verification
            raise HTTPException(500, exc.message) from exc
        if explorer is None:
            raise HTTPException(404, f"{name!r}'s champion is not a recommender")
        return explore_view.explore_page(name, explorer, user)

    @app.get("/systems/{name}/reports/{file}")
    def report(name: str, file: str):
        # only a report the listing names: nothing else of the disk is reachable
        if file not in state.html_reports(root, known(name)):
            raise HTTPException(404, f"no report {file!r} for {name!r}")
        return FileResponse(root / "reports" / name / file, media_type="text/html")

    @app.get("/systems/{name}/versions/{version}/evaluation.html")
    def evaluation(name: str, version: int):
        path = state.run_file(state.runs(root, known(name)).get(version), "evaluation.html")
        if path is None:
            raise HTTPException(404, f"no evaluation report of {name!r} version {version}")
        return FileResponse(path, media_type="text/html")

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "alive", "workspace": str(root)}

    return app


def serve(
    root: Path, host: str = "127.0.0.1", port: int = 8080, mlflow_url: str = "http://127.0.0.1:5000"
) -> None:
    """Serve the dashboard until interrupted."""
    import uvicorn

    app = create_app(root, mlflow_url)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
