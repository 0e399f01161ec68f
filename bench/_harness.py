"""Shared benchmark plumbing: run a contender in its own process, keep its fastest run.

Each contender runs in a fresh subprocess so that its peak RSS is its own; the subprocess
prints one JSON object (with at least ``seconds``) as its last line of output.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any


def best_of(cmd: list[str], repeat: int) -> dict[str, Any]:
    """Run ``cmd`` ``repeat`` times and return the parsed report of the fastest run.

    Raises
    ------
    SystemExit
        With the contender's stderr when a run fails.
    """
    best: dict[str, Any] | None = None
    for _ in range(max(repeat, 1)):
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{res.stderr}")
        r: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
        if best is None or r["seconds"] < best["seconds"]:
            best = r
    assert best is not None
    return best
