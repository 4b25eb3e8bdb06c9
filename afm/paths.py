"""Where things live, stated once. Each place comes from an explicit argument, then an
environment variable, then a default beside the source checkout (an editable install).

- the bundled sample: `AFM_SAMPLE_DIR`, else `<checkout>/sample_data`
- registry datasets (`frappe/`, `ml-tag/`): an explicit `--data-dir` is the only place looked at;
  else `AFM_DATA_DIR`, then `./data`, `<checkout>/data` and `<checkout>/../shared/data`
- saved runs the app lists: `AFM_RUNS_DIR`, else `<checkout>/runs`
"""

from __future__ import annotations

import os
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent


def _from_env(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value) if value else default


def sample_dir() -> Path:
    return _from_env("AFM_SAMPLE_DIR", CHECKOUT / "sample_data")


def runs_dir() -> Path:
    return _from_env("AFM_RUNS_DIR", CHECKOUT / "runs")


def data_roots(explicit: str | os.PathLike | None = None) -> list[Path]:
    """Where registry datasets are looked for, first match wins. An explicit directory is the
    only place looked at: a user who names one does not want a copy found elsewhere."""
    if explicit:
        return [Path(explicit)]
    roots = [Path(os.environ["AFM_DATA_DIR"])] if os.environ.get("AFM_DATA_DIR") else []
    roots += [Path.cwd() / "data", CHECKOUT / "data", CHECKOUT.parent / "shared" / "data"]
    return list(dict.fromkeys(roots))


def inside_data_roots(path: str | os.PathLike) -> bool:
    """Whether `path` (links resolved) lies in one of the configured data roots: the app lets a
    visitor read and download data there and nowhere else on the server."""
    resolved = Path(path).expanduser().resolve()
    return any(resolved.is_relative_to(root.resolve()) for root in data_roots())
