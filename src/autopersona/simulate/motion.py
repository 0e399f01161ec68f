"""Speed profiles and 1 Hz motion along a :class:`~autopersona.simulate.routes.Path`.

The speed profile is built on a distance grid (2 m on streets and tight arcs, 8 m on
straight arterials, highways and rural roads) as the minimum of

* a cruise cap: speed limit x the driver's speed factor x a congestion factor x a smooth
  random fluctuation,
* corner caps ``sqrt(a_lat_max / |curvature|)`` with the driver's accepted lateral
  acceleration,
* braking envelopes ``sqrt(c^2 + 2 b (s_c - s))`` before, and acceleration envelopes
  ``sqrt(c^2 + 2 a (s - s_c))`` after, every point (stops have ``c = 0``), with ``a`` and
  ``b`` one of five levels around the driver's means (drawn per road segment and per
  stop), computed as running minima so the whole profile is vectorised; a small share of
  stops (``emergency_p``) are emergency stops braking at 4.2 m/s^2 for every style.

Each grid cell is then a constant-acceleration piece, which gives the exact time at every
grid point; stops get a dwell time. Resampling at whole seconds uses the exact kinematics
of the cell, so that

* ``accel_long_mps2[t] = v[t+1] - v[t]`` (plus clipped IMU noise of at most 0.09 m/s^2),
* ``yaw_rate = curvature x v`` and ``accel_lat_mps2 = v x yaw_rate`` (rad/s),
* the distance between consecutive fixes is the distance driven in that second.

Sign conventions: heading is the compass course (degrees clockwise from north); yaw rate
and lateral acceleration are positive for left turns (counter-clockwise, ISO 8855), so
``heading[t+1] - heading[t] ~ -yaw_rate``.

Examples
--------
>>> import numpy as np
>>> from autopersona.simulate.routes import build_route
>>> rng = np.random.default_rng(0)
>>> path = build_route(np.zeros(2), np.array([2000.0, 1500.0]), 0.2, rng)
>>> m = drive(path, DriverParams(1.0, 2.0, 2.0, 3.0, 0.03), 0, rng)
>>> bool(abs(m.s[-1] - path.total) < 1e-6 and m.v[0] == 0 and m.v[-1] == 0)
True
>>> bool(np.allclose(m.a_true, np.diff(m.v, append=m.v[-1])))
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from autopersona.simulate.routes import (
    ARTERIAL,
    HIGHWAY,
    RESIDENTIAL,
    RURAL,
    SPEED_LIMIT_MPS,
    URBAN,
    Path,
)

__all__ = ["CONGESTION_FACTOR", "DriverParams", "TripMotion", "drive", "smooth_noise"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: Cruise speed factor by congestion level (0 free flow .. 3 jammed).
CONGESTION_FACTOR = np.array([1.0, 0.78, 0.5, 0.28])
_DS = 2.0
_DS_COARSE = 8.0
#: Acceleration / braking multipliers of the K envelope classes (deciles 10..90 % of a
#: log-normal with sigma 0.25 around the driver's mean).
_CLASS_MULT = np.exp(0.25 * np.array([-1.2816, -0.5244, 0.0, 0.5244, 1.2816]))
#: Braking (m/s^2) into the occasional emergency stop, whatever the driving style.
_EMERGENCY_BRAKE = 4.2


@dataclass(frozen=True)
class DriverParams:
    """Driving-style parameters of one driver (from :class:`~.truth.Person`)."""

    speed_factor: float
    accel_mean: float
    brake_mean: float
    corner_lat: float
    speed_noise: float
    emergency_p: float = 0.01


@dataclass(frozen=True)
class TripMotion:
    """One trip sampled at 1 Hz (index = seconds since departure).

    ``a_true`` is the exact forward difference of ``v``; ``a_long`` adds IMU noise.
    ``th`` is the mathematical heading (rad), ``kappa`` the path curvature.
    """

    s: FloatArray
    v: FloatArray
    a_true: FloatArray
    a_long: FloatArray
    x: FloatArray
    y: FloatArray
    th: FloatArray
    kappa: FloatArray
    road: IntArray
    congestion: IntArray
    stops: int

    @property
    def n(self) -> int:
        """Number of 1 Hz samples."""
        return len(self.v)

    @property
    def heading_deg(self) -> FloatArray:
        """Compass course in [0, 360)."""
        return np.mod(90.0 - np.degrees(self.th), 360.0)

    @property
    def yaw_rate_rad(self) -> FloatArray:
        """Yaw rate (rad/s, positive left)."""
        return self.kappa * self.v

    @property
    def distance_m(self) -> float:
        """Distance driven."""
        return float(self.s[-1])


def smooth_noise(n: int, rng: np.random.Generator, width: int) -> FloatArray:
    """Zero-mean, unit-variance noise smoothed over about ``width`` samples."""
    width = max(1, min(width, n))
    w = rng.normal(0, 1, n + width)
    k = np.hanning(width + 2)[1:-1]
    out = np.convolve(w, k / math.sqrt(float((k * k).sum())), mode="valid")[:n]
    return np.asarray(out, dtype=float)


def _stops(
    path: Path, seg_cong: IntArray, rng: np.random.Generator
) -> tuple[list[float], list[float]]:
    """Positions (m) and dwell times (s) of traffic-light, turn and stop-and-go stops."""
    pos: list[float] = []
    dwell: list[float] = []
    p_red = {URBAN: 0.35, ARTERIAL: 0.3, RESIDENTIAL: 0.12}
    for j in range(len(path.s0)):
        road = int(path.road[j])
        s0, ln, cong = float(path.s0[j]), float(path.length[j]), int(seg_cong[j])
        if road not in p_red:
            if cong >= 2:  # stop-and-go on jammed highways
                for _ in range(int(rng.poisson(ln / 1000 * cong * 0.8))):
                    pos.append(s0 + float(rng.uniform(0.05, 0.95)) * ln)
                    dwell.append(float(rng.uniform(2, 15)))
            continue
        if path.kappa[j] != 0.0:
            if abs(path.kappa[j] * ln) > math.radians(45) and rng.random() < 0.3 + 0.1 * cong:
                pos.append(s0)
                dwell.append(float(rng.uniform(3, 30)))
            continue
        p = min(0.9, p_red[road] + 0.12 * cong)
        u = float(rng.uniform(150, 600))
        while u < ln - 30:
            if rng.random() < p:
                pos.append(s0 + u)
                dwell.append(float(rng.uniform(5, 55)))
            u += float(rng.uniform(150, 600))
        if cong >= 2:
            for _ in range(int(rng.poisson(ln / 1000 * cong))):
                pos.append(s0 + float(rng.uniform(0.05, 0.95)) * ln)
                dwell.append(float(rng.uniform(2, 15)))
    return pos, dwell


def drive(
    path: Path, params: DriverParams, congestion: int, rng: np.random.Generator
) -> TripMotion:
    """Simulate one trip along ``path`` starting and ending at standstill.

    Parameters
    ----------
    path
        The route.
    params
        The driver's style parameters.
    congestion
        Base congestion level 0..3 (each segment varies by +-1 around it; residential
        streets are at most 1).
    rng
        Random generator of the vehicle's drive stream.
    """
    L = path.total
    nseg = len(path.s0)
    # grid: 2 m on streets and tight arcs, 8 m on straight arterials, highways, rural roads
    coarse = (path.kappa == 0.0) & np.isin(path.road, (HIGHWAY, ARTERIAL, RURAL))
    coarse |= (np.abs(path.kappa) < 1 / 300.0) & (path.kappa != 0.0)
    step = np.where(coarse, _DS_COARSE, _DS)
    cnt = np.maximum(np.ceil(path.length / step).astype(np.int64), 1)
    seg_of = np.repeat(np.arange(nseg), cnt)
    first = np.cumsum(cnt) - cnt
    frac = (np.arange(int(cnt.sum())) - first[seg_of]) / cnt[seg_of]
    s = np.append(path.s0[seg_of] + frac * path.length[seg_of], L)
    n = len(s) - 1
    ds = np.diff(s)
    seg = np.append(seg_of, nseg - 1)
    road = path.road[seg]
    seg_cong = np.clip(congestion + rng.choice([-1, 0, 0, 1], size=nseg), 0, 3)
    seg_cong = np.where(path.road == RESIDENTIAL, np.minimum(seg_cong, 1), seg_cong)
    cong = seg_cong[seg]

    # cruise cap with a smooth fluctuation (sum of three sinusoids in distance)
    lam = rng.uniform(250, 1500, 3)
    ph = rng.uniform(0, 2 * np.pi, 3)
    amp = rng.dirichlet(np.ones(3)) * params.speed_noise
    wobble = (amp[:, None] * np.sin(2 * np.pi * s[None, :] / lam[:, None] + ph[:, None])).sum(0)
    cap = SPEED_LIMIT_MPS[road] * params.speed_factor * CONGESTION_FACTOR[cong] * (1 + wobble)
    # corners: the lateral acceleration the driver accepts varies per corner
    alat = params.corner_lat * rng.lognormal(0, 0.12, nseg)
    kabs = np.abs(path.kappa)
    corner = np.sqrt(alat / np.where(kabs > 0, kabs, 1.0))
    cap = np.where(kabs[seg] > 0, np.minimum(cap, corner[seg]), cap)
    v2 = cap * cap

    stop_pos, stop_dwell = _stops(path, seg_cong, rng)
    stop_idx = np.searchsorted(s, np.asarray(stop_pos, dtype=float)).astype(np.int64)
    keep = (stop_idx >= 10) & (stop_idx <= n - 10)
    stop_idx, dwell = stop_idx[keep], np.asarray(stop_dwell)[keep]
    if len(stop_idx):
        order = np.argsort(stop_idx, kind="stable")
        stop_idx, dwell = stop_idx[order], dwell[order]
        sep = np.concatenate([[True], np.diff(stop_idx) >= 10])
        stop_idx, dwell = stop_idx[sep], dwell[sep]
    ends = np.concatenate([[0], stop_idx, [n]])

    # Every grid point is an anchor of an acceleration envelope (after it) and a braking
    # envelope (before it); anchors of a segment share one of K acceleration classes, each
    # stop draws its own. v^2 <= g_j + 2 a |s - s_j| is a running minimum of g -/+ 2 a s.
    cls = rng.integers(0, len(_CLASS_MULT), nseg)[seg]
    stop_cls_up = rng.integers(0, len(_CLASS_MULT), len(ends))
    stop_cls_dn = rng.integers(0, len(_CLASS_MULT), len(ends))
    emergency = rng.random(len(ends)) < params.emergency_p
    emergency[[0, -1]] = False
    stop_cls_dn[emergency] = len(_CLASS_MULT)
    v2[ends] = 0.0
    env = v2.copy()
    for k, mult in enumerate([*_CLASS_MULT, 0.0]):
        up = params.accel_mean * max(mult, 1.0)
        dn = params.brake_mean * mult if mult > 0 else _EMERGENCY_BRAKE
        g = np.where(cls == k, v2, np.inf)
        g_up, g_dn = g.copy(), g.copy()
        g_up[ends] = np.where(stop_cls_up == k, 0.0, np.inf)
        g_dn[ends] = np.where(stop_cls_dn == k, 0.0, np.inf)
        fwd = np.minimum.accumulate(g_up - 2 * up * s) + 2 * up * s
        bwd = np.minimum.accumulate((g_dn + 2 * dn * s)[::-1])[::-1] - 2 * dn * s
        np.minimum(env, fwd, out=env)
        np.minimum(env, bwd, out=env)
    v = np.sqrt(np.maximum(env, 0.0))

    # exact time at grid points (constant acceleration per cell), then dwell at stops
    dt = 2 * ds / np.maximum(v[:-1] + v[1:], 1e-3)
    t = np.concatenate([[0.0], np.cumsum(dt)])
    dw = np.zeros(n + 1)
    dw[0] = float(rng.uniform(2, 15))
    dw[stop_idx] = dwell
    t = t + np.cumsum(dw)  # grid point i is left at t[i]
    arrive = t - dw  # ... and reached at arrive[i]
    # knots: (time, s, v) with a standstill knot pair at each dwell
    has = dw > 0
    kt = np.concatenate([arrive, t[has]])
    ks = np.concatenate([s, s[has]])
    kv = np.concatenate([v, np.zeros(int(has.sum()))])
    order = np.lexsort((np.concatenate([np.zeros(n + 1), np.ones(int(has.sum()))]), kt))
    kt, ks, kv = kt[order], ks[order], kv[order]

    T = float(kt[-1])
    m = math.ceil(T) + 1
    tk = np.arange(m, dtype=float)
    c = np.clip(np.searchsorted(kt, tk, side="right") - 1, 0, len(kt) - 2)
    span = kt[c + 1] - kt[c]
    acc_c = np.where(span > 0, (kv[c + 1] - kv[c]) / np.where(span > 0, span, 1.0), 0.0)
    tau = np.minimum(tk - kt[c], span)
    sk = np.minimum(ks[c] + kv[c] * tau + 0.5 * acc_c * tau * tau, L)
    vk = np.maximum(kv[c] + acc_c * tau, 0.0)
    beyond = tk >= T
    sk[beyond] = L
    vk[beyond] = 0.0
    a_true = np.diff(vk, append=vk[-1])
    a_long = a_true + np.clip(rng.normal(0, 0.03, m), -0.09, 0.09)
    x, y, th, kk, _rd, sg = path.sample(sk)
    return TripMotion(
        s=sk,
        v=vk,
        a_true=a_true,
        a_long=a_long,
        x=x,
        y=y,
        th=th,
        kappa=kk,
        road=path.road[sg],
        congestion=seg_cong[sg],
        stops=len(stop_idx),
    )
