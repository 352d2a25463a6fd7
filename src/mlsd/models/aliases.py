"""The registry's aliases and versions, published as a small JSON file in the workspace.

The prediction server must not import MLflow (it is slow to import and heavy), yet it has
to notice when the ``champion`` alias moves. The registry rewrites this file atomically
after every change; the server reads it, and polls its modification time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlsd.errors import MlsdError
from mlsd.workspace import write_json


def aliases_path(workspace_root: Path, system: str) -> Path:
    """Where the aliases of ``system`` are published."""
    return Path(workspace_root) / "aliases" / f"{system}.json"


def publish(
    workspace_root: Path, system: str, aliases: dict[str, int], packages: dict[int, str]
) -> Path:
    """Write alias → version and version → package folder, atomically."""
    return write_json(
        aliases_path(workspace_root, system),
        {
            "system": system,
            "aliases": {alias: int(v) for alias, v in sorted(aliases.items())},
            "versions": {str(v): str(p) for v, p in sorted(packages.items())},
        },
    )


def read(workspace_root: Path, system: str) -> dict[str, Any]:
    """The published aliases ({} before the first registration)."""
    path = aliases_path(workspace_root, system)
    if not path.exists():
        return {"system": system, "aliases": {}, "versions": {}}
    return json.loads(path.read_text())


def resolve(workspace_root: Path, system: str, ref: str | int) -> tuple[int | None, Path]:
    """(version, package folder) of an alias, a version number or a package folder."""
    published = read(workspace_root, system)
    text = str(ref).strip()
    version = published["aliases"].get(text)
    if version is None and text.isdigit():
        version = int(text)
    if version is not None and str(version) in published["versions"]:
        return version, Path(published["versions"][str(version)])
    folder = package_folder(workspace_root, text)
    if folder is not None:
        return None, folder
    known = ", ".join(f"{a} → {v}" for a, v in published["aliases"].items()) or "none"
    raise MlsdError(
        f"{system!r} has no model {ref!r} (aliases: {known}; versions: "
        f"{', '.join(published['versions']) or 'none'})",
        hint="train and register a model first (mlsd train), or pass a package folder",
        headline="unknown model",
    )


def package_folder(workspace_root: Path, ref: str | Path) -> Path | None:
    """``ref`` as a package folder inside the workspace (symbolic links followed), None if
    it names no folder with a manifest. A folder outside the workspace is refused: a model
    reference never reaches beyond it, however it is spelled (``../``, absolute, a link)."""
    path = Path(str(ref).strip()).expanduser()
    if not (path / "manifest.json").is_file():
        return None
    folder, root = path.resolve(), Path(workspace_root).resolve()
    if not folder.is_relative_to(root):
        raise MlsdError(
            f"the package folder {ref} ({folder}) is outside the workspace {root}",
            hint=f"copy the package into the workspace (e.g. {root / 'packages'}) and pass "
            "that folder, or pass a registered version or alias",
            headline="model outside the workspace",
        )
    return folder
