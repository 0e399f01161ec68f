r"""Read raw GeoLife ``.plt`` trajectories into a frame, every fix as it is in the files.

This is the input that trackintel's ``read_geolife`` gives its algorithms: no cleaning, no
de-duplication, repeated timestamps kept. The golden stay-point tests and the benchmark use it
to compare with trackintel's outputs; the platform itself loads GeoLife through
``autopersona ingest --mapping geolife`` into the ``motion`` table, which quarantines conflicts.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> header = "Geolife trajectory\nWGS 84\nAltitude is in Feet\nReserved 3\n0,2,255,x,0,0,2,1\n0\n"
>>> with tempfile.TemporaryDirectory() as tmp:
...     folder = Path(tmp) / "007" / "Trajectory"
...     folder.mkdir(parents=True)
...     _ = (folder / "20081023025304.plt").write_text(
...         header + "39.984702,116.318417,0,492,39744.1201851852,2008-10-23,02:53:04\n")
...     fixes = read_geolife_plt(tmp)
>>> fixes
   user_id                        ts        lat         lon  alt_ft
0        7 2008-10-23 02:53:04+00:00  39.984702  116.318417   492.0
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

__all__ = ["read_geolife_plt"]

_NAMES = ["lat", "lon", "zero", "alt_ft", "days", "date", "time"]


def read_geolife_plt(data_dir: str | Path) -> pd.DataFrame:
    """Every fix under a GeoLife ``Data/`` folder: ``<user>/Trajectory/*.plt``.

    Parameters
    ----------
    data_dir
        Folder holding one sub-folder per user, named by the user's number.

    Returns
    -------
    pandas.DataFrame
        Columns ``user_id`` (int64, the folder name), ``ts`` (UTC), ``lat``, ``lon``
        (degrees), ``alt_ft`` (float; -777 means invalid, kept as is). Users in numeric order,
        files in name (start time) order, rows in file order.

    Raises
    ------
    FileNotFoundError
        If ``data_dir`` holds no user folder.
    """
    root = Path(data_dir)
    users = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: int(p.name))
    if not users:
        raise FileNotFoundError(f"no GeoLife user folders under {root}")
    frames = []
    for user in users:
        for plt in sorted((user / "Trajectory").glob("*.plt")):
            f = pd.read_csv(
                plt,
                skiprows=6,
                header=None,
                names=_NAMES,
                usecols=["lat", "lon", "alt_ft", "date", "time"],
                dtype={"lat": "float64", "lon": "float64", "alt_ft": "float64"},
            )
            f["user_id"] = int(user.name)
            frames.append(f)
    raw = pd.concat(frames, ignore_index=True)
    ts = pd.to_datetime(raw["date"] + " " + raw["time"], format="%Y-%m-%d %H:%M:%S", utc=True)
    return pd.DataFrame(
        {
            "user_id": raw["user_id"].astype("int64"),
            "ts": ts.dt.as_unit("ns"),
            "lat": raw["lat"],
            "lon": raw["lon"],
            "alt_ft": raw["alt_ft"],
        }
    )
