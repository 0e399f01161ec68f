"""Synthetic connected-vehicle fleet and its owners, with ground truth kept apart.

``simulate`` draws a latent truth per person (driving style, commute pattern, home/work,
lifestyle, content taste, price sensitivity, propensities, range anxiety, time zone …),
generates physically consistent raw data from it for every canonical table, injects
configurable real-world mess, and writes ``tables/`` (what ingestion reads) and ``truth/``
(what scoring reads; never read by a pipeline step).

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> from autopersona.simulate import MessConfig, simulate
>>> with tempfile.TemporaryDirectory() as d:
...     summary = simulate(vehicles=2, days=1, seed=1, out=Path(d), mess=MessConfig.clean(),
...                        workers=1)
...     (Path(d) / "truth" / ".autopersona-truth").exists(), summary.mess
(True, {})
"""

from autopersona.simulate.config import MessConfig, SimulationSummary
from autopersona.simulate.core import simulate

__all__ = ["MessConfig", "SimulationSummary", "simulate"]
