#!/usr/bin/env python3
"""Set up and run autopersona with nothing but Python 3.11+ and pip.

    python3 dev.py demo     # create .venv (once), install, run `autopersona demo`
    python3 dev.py test     # create .venv (once), install with dev extras, lint, type-check, test
    python3 dev.py lint     # ruff + mypy only
    python3 dev.py bench    # run the benchmarks under bench/

The virtual environment is reused; it is reinstalled only when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


def _run(*cmd: str | Path, check: bool = True) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, check=check).returncode


def ensure_venv(extras: str) -> None:
    """Create .venv if needed and install the project when its dependencies changed."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may run under an older python3
        sys.exit(f"autopersona needs Python 3.11+, this is {sys.version.split()[0]}")
    if not PY.exists():
        print(f"creating {VENV.name} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
        _run(PY, "-m", "pip", "install", "-q", "--upgrade", "pip")
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()[
        :16
    ]
    stamp = VENV / f".installed-{digest}"
    if not stamp.exists():
        spec = f".[{extras}]" if extras else "."
        _run(PY, "-m", "pip", "install", "-q", "-e", spec)
        for old in VENV.glob(".installed-*"):
            old.unlink()
        stamp.touch()


def main(argv: list[str]) -> int:
    """Run one dev.py command; returns the exit code."""
    cmd = argv[0] if argv else "help"
    rest = argv[1:]
    if cmd == "demo":
        ensure_venv("")
        return _run(BIN / "autopersona", "demo", *rest, check=False)
    if cmd in ("test", "lint"):
        ensure_venv("dev")
        rc = _run(BIN / "ruff", "check", "src", "tests", "bench", check=False)
        rc |= _run(BIN / "mypy", check=False)
        if cmd == "lint":
            return rc
        rc |= _run(
            PY,
            "-m",
            "pytest",
            "-n",
            os.environ.get("AUTOPERSONA_TEST_WORKERS", "2"),
            *rest,
            check=False,
        )
        return rc
    if cmd == "bench":
        ensure_venv("dev")
        rc = 0
        for b in sorted((ROOT / "bench").glob("*.py")):
            rc |= _run(PY, b, *rest, check=False)
        return rc
    print(__doc__)
    return 0 if cmd == "help" else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
