"""npm packages for tests that run a real JavaScript client under Node, installed once into build/npm (ignored)."""

from __future__ import annotations

import json
import subprocess

from app.settings import REPO_ROOT

NPM_DIR = REPO_ROOT / "build" / "npm"


def npm_packages(*specs: str) -> str:
    """Install each `name@version` into build/npm unless that version is there; return the node_modules path."""
    missing = []
    for spec in specs:
        name, version = spec.rsplit("@", 1)
        manifest = NPM_DIR / "node_modules" / name / "package.json"
        if not manifest.is_file() or json.loads(manifest.read_text(encoding="utf-8"))["version"] != version:
            missing.append(spec)
    if missing:
        NPM_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-save", "--prefix", str(NPM_DIR), *specs],
                       check=True, capture_output=True, text=True, timeout=600)
    return str(NPM_DIR / "node_modules")
