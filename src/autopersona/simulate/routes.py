"""Road-like routes: polylines whose corners are rounded by circular arcs.

A route is a :class:`Path` of straight lines and constant-curvature arcs, so position,
heading and curvature are exact functions of the distance travelled. Urban routes are
Manhattan-style staircases on a (rotated) street grid with tight corners; longer routes add
a meandering arterial or highway middle part with large-radius bends.

Angles inside this module are mathematical (radians, counter-clockwise from east);
curvature is positive for left turns.

Examples
--------
>>> import numpy as np
>>> p = fillet_path(np.array([[0.0, 0.0], [100.0, 0.0], [100.0, 100.0]]),
...                 np.array([URBAN, URBAN]), np.array([10.0]))
>>> round(p.total, 2)  # 2 x 90 m of line + a quarter circle of radius 10
195.71
>>> x, y, th, kap, road, seg = p.sample(np.array([0.0, p.total]))
>>> [round(float(v), 6) for v in (x[1], y[1])]
[100.0, 100.0]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "ARTERIAL",
    "HIGHWAY",
    "RESIDENTIAL",
    "ROAD_TYPES",
    "RURAL",
    "SPEED_LIMIT_MPS",
    "URBAN",
    "Path",
    "build_route",
    "fillet_path",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: Road classes, indexed by the integer codes below (names match the v2x_context contract).
ROAD_TYPES = ("highway", "arterial", "urban", "residential", "rural")
HIGHWAY, ARTERIAL, URBAN, RESIDENTIAL, RURAL = range(5)
#: Posted limits: 120, 70, 50, 30, 80 km/h.
SPEED_LIMIT_MPS = np.array([120.0, 70.0, 50.0, 30.0, 80.0]) / 3.6
#: Corner radius range (m) by the slower road class meeting at the corner.
CORNER_RADIUS_M = {
    HIGHWAY: (400.0, 900.0),
    ARTERIAL: (30.0, 80.0),
    URBAN: (7.0, 18.0),
    RESIDENTIAL: (6.0, 12.0),
    RURAL: (60.0, 150.0),
}


@dataclass(frozen=True)
class Path:
    """Segments (lines and arcs) laid end to end.

    Attributes
    ----------
    s0, length
        Start distance along the path and length of each segment (m).
    x0, y0, th0
        Start point (plane m) and heading (radians, CCW from east) of each segment.
    kappa
        Curvature (1/m, positive = left turn); 0 for lines.
    road
        Road class code of each segment.
    """

    s0: FloatArray
    length: FloatArray
    x0: FloatArray
    y0: FloatArray
    th0: FloatArray
    kappa: FloatArray
    road: IntArray

    @property
    def total(self) -> float:
        """Total length in metres."""
        return float(self.s0[-1] + self.length[-1])

    def sample(
        self, s: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, IntArray, IntArray]:
        """Position, heading, curvature, road class and segment index at distances ``s``."""
        s = np.minimum(np.maximum(s, 0.0), self.total)
        seg = np.searchsorted(self.s0, s, side="right") - 1
        np.clip(seg, 0, len(self.s0) - 1, out=seg)
        u = s - self.s0[seg]
        k = self.kappa[seg]
        th0 = self.th0[seg]
        th = th0 + k * u
        straight = k == 0.0
        ksafe = np.where(straight, 1.0, k)
        c0, s0_ = np.cos(th0), np.sin(th0)
        x = self.x0[seg] + np.where(straight, u * c0, (np.sin(th) - s0_) / ksafe)
        y = self.y0[seg] + np.where(straight, u * s0_, (c0 - np.cos(th)) / ksafe)
        return x, y, th, k, self.road[seg], seg


def _slower(a: int, b: int) -> int:
    return a if SPEED_LIMIT_MPS[a] <= SPEED_LIMIT_MPS[b] else b


def fillet_path(points: FloatArray, roads: IntArray, radii: FloatArray) -> Path:
    """Round each interior corner of a polyline with a circular arc.

    Parameters
    ----------
    points
        ``(n, 2)`` vertices in plane metres (consecutive duplicates are dropped).
    roads
        ``n - 1`` road class codes, one per leg.
    radii
        ``n - 2`` wanted corner radii; a radius is reduced when the adjacent legs are too
        short (each corner uses at most 45 % of each adjacent leg).
    """
    pts = np.asarray(points, dtype=float)
    legs = np.diff(pts, axis=0)
    lens = np.hypot(legs[:, 0], legs[:, 1])
    if (lens < 0.5).any():
        raise ValueError("fillet_path needs legs of at least 0.5 m")
    n_legs = len(lens)
    if n_legs == 0:
        raise ValueError("route has no length")
    u = legs / lens[:, None]
    heading = np.arctan2(u[:, 1], u[:, 0])
    phi = np.zeros(n_legs + 1)  # turn angle at vertex i (1..n_legs-1)
    tang = np.zeros(n_legs + 1)
    rad = np.zeros(n_legs + 1)
    for i in range(1, n_legs):
        cross = u[i - 1, 0] * u[i, 1] - u[i - 1, 1] * u[i, 0]
        dot = float(np.clip(u[i - 1] @ u[i], -1.0, 1.0))
        ph = math.atan2(cross, dot)
        if abs(ph) < 1e-6:
            continue
        ph = float(np.clip(ph, -math.radians(170), math.radians(170)))
        tn = math.tan(abs(ph) / 2)
        r = float(radii[i - 1])
        t = min(r * tn, 0.45 * lens[i - 1], 0.45 * lens[i])
        phi[i], tang[i], rad[i] = ph, t, max(t / tn, 1.0)
        tang[i] = rad[i] * tn
    s0: list[float] = []
    ln: list[float] = []
    x0: list[float] = []
    y0: list[float] = []
    th0: list[float] = []
    kap: list[float] = []
    rd: list[int] = []
    s = 0.0
    for i in range(n_legs):
        start = pts[i] + u[i] * tang[i]
        line_len = lens[i] - tang[i] - tang[i + 1]
        if line_len > 1e-6:
            s0.append(s)
            ln.append(line_len)
            x0.append(float(start[0]))
            y0.append(float(start[1]))
            th0.append(float(heading[i]))
            kap.append(0.0)
            rd.append(int(roads[i]))
            s += line_len
        if i + 1 < n_legs and phi[i + 1] != 0.0:
            a0 = pts[i + 1] - u[i] * tang[i + 1]
            arc_len = rad[i + 1] * abs(phi[i + 1])
            s0.append(s)
            ln.append(arc_len)
            x0.append(float(a0[0]))
            y0.append(float(a0[1]))
            th0.append(float(heading[i]))
            kap.append(math.copysign(1.0 / rad[i + 1], phi[i + 1]))
            rd.append(_slower(int(roads[i]), int(roads[i + 1])))
            s += arc_len
    return Path(
        s0=np.array(s0),
        length=np.array(ln),
        x0=np.array(x0),
        y0=np.array(y0),
        th0=np.array(th0),
        kappa=np.array(kap),
        road=np.array(rd, dtype=np.int64),
    )


def _rot(angle: float) -> FloatArray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def _staircase(
    a: FloatArray, b: FloatArray, grid: float, rng: np.random.Generator, max_legs: int
) -> list[FloatArray]:
    """Vertices (excluding ``a``) of a grid-aligned staircase from ``a`` to ``b``."""
    rot = _rot(grid)
    d = rot.T @ (b - a)
    k = int(rng.integers(2, max_legs + 1))
    first_x = bool(rng.random() < 0.5)
    nx = (k + 1) // 2 if first_x else k // 2
    ny = k - nx
    if abs(d[0]) < 40:
        nx, ny, first_x = 1, max(ny, 1), False
    if abs(d[1]) < 40:
        ny, nx, first_x = 1, max(nx, 1), True
    wx = rng.dirichlet(np.full(nx, 3.0)) * d[0]
    wy = rng.dirichlet(np.full(ny, 3.0)) * d[1]
    out: list[FloatArray] = []
    cur = np.zeros(2)
    ix = iy = 0
    use_x = first_x
    while ix < nx or iy < ny:
        if (use_x and ix < nx) or iy >= ny:
            cur = cur + np.array([wx[ix], 0.0])
            ix += 1
        else:
            cur = cur + np.array([0.0, wy[iy]])
            iy += 1
        use_x = not use_x
        out.append(a + rot @ cur)
    out[-1] = b.copy()
    return out


def _split_leg(
    points: list[FloatArray], roads: list[int], at_m: float, first: bool, outer: int
) -> None:
    """Give the outer ``at_m`` of the first (or last) leg the road class ``outer``."""
    i = 0 if first else len(points) - 2
    p, q = points[i], points[i + 1]
    L = float(np.hypot(*(q - p)))
    if at_m * 1.5 >= L:
        roads[i] = outer
        return
    f = at_m / L if first else 1 - at_m / L
    points.insert(i + 1, p + (q - p) * f)
    if first:
        roads.insert(0, outer)
    else:
        roads.append(outer)


def _drop_short_legs(points: list[FloatArray], roads: list[int], min_len: float) -> None:
    """Merge legs shorter than ``min_len`` into their neighbours (end points are kept)."""
    i = 0
    while i < len(roads) and len(roads) > 1:
        if float(np.hypot(*(points[i + 1] - points[i]))) >= min_len:
            i += 1
            continue
        if i + 1 < len(roads):  # drop the leg's end vertex; the next leg now starts earlier
            del points[i + 1]
            del roads[i]
        else:  # last leg: drop its start vertex instead
            del points[i]
            del roads[i - 1]
            i -= 1


def build_route(
    p0: FloatArray,
    p1: FloatArray,
    grid_angle: float,
    rng: np.random.Generator,
    rural_end: bool = False,
) -> Path:
    """A road-like route from ``p0`` to ``p1`` (plane metres).

    Trips up to 6 km are street-grid staircases (residential at both ends, urban or
    arterial between). Longer trips leave on a short staircase, follow a meandering
    arterial (under 25 km) or highway (arterial for the first and last stretch), and
    reach the destination on another staircase; ``rural_end`` makes the final access
    rural instead of urban.
    """
    p0 = np.asarray(p0, dtype=float)
    p1 = np.asarray(p1, dtype=float)
    D = float(np.hypot(*(p1 - p0)))
    pts: list[FloatArray] = [p0]
    roads: list[int] = []
    if D <= 6000:
        st = _staircase(p0, p1, grid_angle, rng, 4 if D < 2500 else 5)
        pts += st
        roads = [
            URBAN if float(np.hypot(*(st[i] - pts[i]))) < 1500 else ARTERIAL for i in range(len(st))
        ]
        _split_leg(pts, roads, float(rng.uniform(150, 350)), True, RESIDENTIAL)
        _split_leg(pts, roads, float(rng.uniform(150, 350)), False, RESIDENTIAL)
    else:
        dirv = (p1 - p0) / D
        perp = np.array([-dirv[1], dirv[0]])
        acc_a = min(float(rng.uniform(800, 2000)), 0.12 * D)
        acc_b = min(float(rng.uniform(800, 2000)), 0.12 * D)
        A = p0 + dirv * acc_a + perp * float(rng.normal(0, 0.3 * acc_a))
        B = p1 - dirv * acc_b + perp * float(rng.normal(0, 0.3 * acc_b))
        sa = _staircase(p0, A, grid_angle, rng, 3)
        pts += sa
        roads += [URBAN] * len(sa)
        mid = float(np.hypot(*(B - A)))
        highway = D >= 25000
        spacing = 6000.0 if highway else 2500.0
        m = int(np.clip(mid // spacing, 1, 60))
        f = (np.arange(1, m + 1) + rng.uniform(-0.25, 0.25, m)) / (m + 1)
        # smooth cross-track meander: a mean-reverting random walk
        amp = (0.04 if highway else 0.06) * mid / math.sqrt(m)
        walk = np.zeros(m)
        for i in range(m):
            walk[i] = (0.6 * walk[i - 1] if i else 0.0) + float(rng.normal(0, amp))
        md = (B - A) / mid
        mperp = np.array([-md[1], md[0]])
        wps = [A + (B - A) * fi + mperp * wi for fi, wi in zip(f, walk, strict=True)]
        mid_roads = [HIGHWAY if highway else ARTERIAL] * (m + 1)
        if highway:
            mid_roads[0] = ARTERIAL
            mid_roads[-1] = ARTERIAL
        pts += [*wps, B]
        roads += mid_roads
        sb = _staircase(B, p1, grid_angle, rng, 3)
        pts += sb
        roads += [RURAL if rural_end else URBAN] * len(sb)
        _split_leg(pts, roads, float(rng.uniform(150, 350)), True, RESIDENTIAL)
        _split_leg(
            pts, roads, float(rng.uniform(150, 350)), False, RURAL if rural_end else RESIDENTIAL
        )
    _drop_short_legs(pts, roads, 5.0)
    radii = []
    for i in range(1, len(pts) - 1):
        lo, hi = CORNER_RADIUS_M[_slower(roads[i - 1], roads[i])]
        radii.append(float(rng.uniform(lo, hi)))
    return fillet_path(np.array(pts), np.array(roads, dtype=np.int64), np.array(radii))
