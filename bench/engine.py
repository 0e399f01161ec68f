"""Live engine throughput and latency: MQTT publish -> engine -> head-unit message received.

A private Mosquitto is started on a free loopback port (its own config and persistence in a
temporary folder).  Two contenders run in their own processes against it, fed by the same
load generator, which publishes vehicle events (QoS 1) at a fixed rate (open loop) and
subscribes to what comes back (QoS 1):

* **echo** — the physical limit: a client that republishes each event to a reply topic
  (publish -> broker -> echo client -> broker -> receiver: the same two broker hops as the
  engine path, no work in between), with the properties a head-unit message carries;
* **engine** — ``LiveEngine`` as ``autopersona run`` starts it (parse and validate ->
  decide -> one journal record per MQTT batch with the event ledger, decisions and outbox
  rows -> dispatcher: one ``fdatasync`` for every batch waiting, PUBACK of their events,
  head-unit publish QoS 1 -> results journaled; the journal is applied to a DuckDB warehouse
  file in the temporary folder every 0.2 s in the background, ``--apply-every`` to change
  it: a value longer than the run leaves every warehouse write to shutdown, which
  measures the hot path without them).  ``--journal off`` measures
  the engine with one DuckDB transaction per batch instead, ``--journal nosync`` without
  the ``fdatasync``.  The decision engine is a minimal one (one head-unit ``send``
  decision per event, logged in ``strategy_decisions``) so the figure is the delivery
  pipeline's; ``--engine strategy`` uses the real :class:`StrategyEngine` on an empty
  warehouse (it evaluates and logs nothing for unknown vehicles, so nothing comes back and
  only its ingest throughput is reported).

The broker runs with ``set_tcp_nodelay true`` and every client with ``TCP_NODELAY``, as a
latency-sensitive deployment would (otherwise a small write waits for the peer's delayed
ACK, up to 40 ms).  The first ``--warmup`` seconds of each run are not counted (connections,
caches and first-use costs of both contenders).

Load generator, receiver and echo use the engine's own MQTT client
(:func:`autopersona.delivery.mqtt.make_client`), the payloads are built before the clock
starts, and the receiver reads both contenders' messages the same way, so the bench's own
cost is small and the same for both (it is printed: CPU per event of the bench process).
The engine runs pseudonymised, as deployed (a key of the run, the vault in the temporary
folder: events pseudonymised on arrival, each head-unit topic re-identified through the
audited vault); ``--no-pseudonymise`` turns that off.

For each rate the bench prints events/s delivered, p50/p99/max latency of both, the engine
p99 as a multiple of the echo p99, and the CPU time each process spent per event (which,
unlike latency, does not depend much on how busy the machine is: it bounds the throughput
one engine process can reach on a free core).  Target: >= 5,000 events/s with p99 <= 3x echo.
Runtime is bounded (default well under 2 minutes: the tail wait ends when everything arrived)::

    python bench/engine.py [--rates 1000 5000] [--seconds 3] [--warmup 1] [--drain 15]
                           [--journal sync|nosync|off] [--apply-every 0.2]
                           [--workers 1] [--no-pseudonymise] [--json]
                           [--trace FILE.csv] [--plot FILE.png]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from autopersona.delivery.mqtt import FastClient, make_client, publish_properties
from autopersona.strategy.decision import Decision, idempotency_key, new_decision_id

PREFIX = "bench/v1"
JOURNAL_LABEL = {
    "sync": "journal, fdatasync per batch, applied to DuckDB every {every:g} s",
    "nosync": "journal without fdatasync, applied to DuckDB every {every:g} s",
    "off": "one DuckDB transaction per batch",
}


# --------------------------------------------------------------------------- broker
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 10) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def start_broker(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 1000000\nmax_inflight_messages 0\n"
        # as a latency-sensitive deployment configures it (both contenders go through it):
        # without it the broker's small writes (PUBACKs, forwarded messages) wait for the
        # ACK of the previous one, which the client's delayed ACK holds back up to 40 ms
        "set_tcp_nodelay true\n"
        f"log_dest file {folder}/mosquitto.log\n"
    )
    proc = subprocess.Popen(
        ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    if not _wait_port(port):
        proc.kill()
        raise SystemExit("mosquitto did not start")
    return proc, port


def _client(cid: str) -> FastClient:
    """The load generator's and the echo's client: the one the engine uses (its fast paths)."""
    return make_client(cid)


# --------------------------------------------------------------------------- contenders
class MinimalEngine:
    """One head-unit send decision per event, logged in ``strategy_decisions``.

    It follows the strategy engine's interface, including ``on_event(event, log=False)`` and
    ``log(decisions)``, so the live engine logs a whole MQTT batch with one insert.
    """

    def __init__(self, wh: Any) -> None:
        from autopersona.strategy.decision import create_decision_table

        self.wh = wh
        create_decision_table(wh.con)

    def on_event(self, event: dict[str, Any], *, log: bool = True) -> list[Decision]:
        person = f"P-{event['vin']}"
        key = idempotency_key("bench", person, event["event_id"])
        d = Decision(
            new_decision_id(), key, person, event["vin"], "bench", "event", event["event_id"],
            "head_unit", "send", None, "bench", "treatment", 1, 1.0, "Charging stops",
            "Two fast chargers on your route.", {"code": "TRIP10"}, datetime.now(UTC), None,
        )  # fmt: skip
        if log:
            self.log([d])
        return [d]

    def log(self, decisions: list[Decision]) -> int:
        from autopersona.strategy.decision import write_decisions

        return write_decisions(self.wh.con, decisions, create=False)  # the engine's writer

    def release_held(
        self, vin: str, speed_mps: float, now: datetime, *, log: bool = True
    ) -> list[Decision]:
        return []


class _GcPauses:
    """Python's garbage collections in the engine process: how many, and how long each took.

    A full collection holds the GIL for as long as it walks every tracked object, and every
    thread of the engine waits for it: a latency spike that no thread's own timing shows.
    """

    def __init__(self) -> None:
        self._t0 = 0.0
        self.ms: dict[int, list[float]] = {0: [], 1: [], 2: []}

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.ms[info["generation"]].append(1e3 * (time.perf_counter() - self._t0))

    def summary(self) -> dict[str, list[float]]:
        """Per generation: [collections, total ms, longest ms]."""
        return {
            str(g): [len(v), round(sum(v), 2), round(max(v, default=0.0), 2)]
            for g, v in self.ms.items()
        }


def run_engine(
    port: int,
    folder: Path,
    kind: str,
    journal: str = "sync",
    apply_every: float = 0.2,
    worker: int = 0,
    workers: int = 1,
) -> None:
    """Contender process: the live engine (worker ``worker`` of ``workers``) until SIGTERM."""
    from autopersona.delivery.config import load_channels_config
    from autopersona.delivery.live import LiveEngine
    from autopersona.store.warehouse import Warehouse

    cfg = load_channels_config()
    cfg = cfg.model_copy(
        update={
            "mqtt": cfg.mqtt.model_copy(
                # A fresh client id and no session after disconnect: the next contender must
                # not inherit this one's queue, nor share the events with its dead session.
                update={"port": port, "topic_prefix": PREFIX,
                        "client_id": f"bench-engine-{uuid.uuid4().hex[:6]}",
                        "session_expiry_s": 0, "receive_maximum": 1000}
            )
        }
    )  # fmt: skip
    # As `autopersona run` opens it: one DuckDB thread (small statements).
    wh = Warehouse(folder / f"bench{worker}.duckdb", memory_limit="1GB", threads=1)
    if kind == "strategy":
        from autopersona.strategy import StrategyEngine

        engine: Any = StrategyEngine(wh)
    else:
        engine = MinimalEngine(wh)
    import logging

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    live = LiveEngine(
        wh,
        engine,
        cfg,
        batch_max=1000,
        batch_log=kind == "minimal",
        journal=journal != "off",
        journal_sync=journal == "sync",
        apply_wait_s=apply_every,
        partition=(worker, workers) if workers > 1 else None,
    )
    pauses = _GcPauses()
    gc.callbacks.append(pauses)
    cpu0 = time.process_time()
    stats = live.run_forever()
    cpu = time.process_time() - cpu0
    gc.callbacks.remove(pauses)
    out = {**stats.as_dict(), "cpu_s": cpu, "gc": pauses.summary()}
    sys.stdout.write(json.dumps(out) + "\n")
    wh.close()


def run_echo(port: int) -> None:
    """Contender process: republish every event to the reply topic until SIGTERM.

    Through the engine's MQTT client, each reply with the properties a head-unit message
    carries (content type, idempotency key), so the receiver reads both the same way.
    """
    c = _client("bench-echo")
    done = threading.Event()

    def on_raw(topic: str, mid: int, qos: int, payload: bytes) -> None:
        vin = topic.split("/")[-2]
        props = publish_properties(
            content_type="application/json", user_properties=[("idempotency_key", str(mid))]
        )
        c.publish(f"{PREFIX}/vehicles/{vin}/headunit", payload, qos=1, properties=props)

    def on_connect(client: Any, u: Any, f: Any, rc: Any, p: Any) -> None:
        client.subscribe(f"{PREFIX}/vehicles/+/events", qos=1)

    def on_subscribe(client: Any, u: Any, mid: int, rcs: Any, p: Any) -> None:
        sys.stderr.write("subscribed to events\n")
        sys.stderr.flush()

    c.on_raw_message = on_raw
    c.on_connect = on_connect
    c.on_subscribe = on_subscribe
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    c.connect("127.0.0.1", port)
    cpu0 = time.process_time()
    c.loop_start()
    done.wait()
    c.disconnect()
    c.loop_stop()
    sys.stdout.write(json.dumps({"cpu_s": time.process_time() - cpu0}) + "\n")


# --------------------------------------------------------------------------- load
def load(
    port: int,
    rate: float,
    seconds: float,
    drain_s: float,
    warmup_s: float = 0.0,
    trace: list[tuple[float, float]] | None = None,
) -> dict[str, Any]:
    """Publish ``rate`` events/s for ``seconds`` and time each one's head-unit message.

    The first ``warmup_s`` seconds of the same open-loop stream go before the measured ones
    and are left out of the figures (first-use costs: connections, caches, allocations).
    ``trace``, when given, receives (seconds since the first measured publish, latency ms) of
    every measured event, in publishing order (missing ones with latency NaN).
    """
    n_warm = int(rate * warmup_s)
    n = n_warm + int(rate * seconds)
    sent: dict[str, int] = {}
    got: dict[str, int] = {}
    lock = threading.Lock()
    ready = threading.Event()

    def on_raw(topic: str, mid: int, qos: int, payload: bytes) -> None:
        t = time.perf_counter_ns()
        body = orjson.loads(payload)
        eid = body.get("trigger_key") or body.get("event_id")
        with lock:
            got.setdefault(eid, t)

    rx = _client(f"bench-rx-{uuid.uuid4().hex[:6]}")
    rx.on_raw_message = on_raw
    rx.raw_drops_properties = True  # head-unit messages carry properties; only the body counts
    rx.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{PREFIX}/vehicles/+/headunit", qos=1)
    rx.on_subscribe = lambda c, u, mid, rcs, p: ready.set()
    rx.connect("127.0.0.1", port)
    rx.loop_start()
    tx = _client(f"bench-tx-{uuid.uuid4().hex[:6]}")
    tx.connect("127.0.0.1", port)
    tx.loop_start()
    if not ready.wait(30):
        raise SystemExit("the head-unit receiver could not subscribe")
    run = uuid.uuid4().hex[:6]
    ts = datetime.now(UTC).isoformat()
    events = []  # built before the clock starts: the load generator only publishes
    for i in range(n):
        vin = f"VIN{i % 500:05d}"
        eid = f"{run}-{i}"
        payload = json.dumps(
            {"event_id": eid, "vin": vin, "type": "route_planned", "ts": ts,
             "payload": {"route_km": 420, "remaining_range_km": 150}}
        ).encode()  # fmt: skip
        events.append((eid, f"{PREFIX}/vehicles/{vin}/events", payload))
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    i = 0
    while i < n:
        # Every event whose time has come, then sleep until the next one (at least 1 ms:
        # at high rates events go out in bursts of a millisecond's worth, each timed when
        # it is published, instead of one wake-up per event).
        due = min(n, int((time.perf_counter() - t0) * rate) + 1)
        while i < due:
            eid, topic, payload = events[i]
            sent[eid] = time.perf_counter_ns()  # before the publish: the receiver may be quick
            tx.publish(topic, payload, qos=1)
            i += 1
        if i < n:
            time.sleep(max(t0 + i / rate - time.perf_counter(), 0.001))
    publish_s = time.perf_counter() - t0
    end = time.perf_counter() + drain_s
    while time.perf_counter() < end:
        with lock:
            if len(got) >= n:
                break
        time.sleep(0.01)
    load_cpu = time.process_time() - cpu0  # publisher and receiver (this process)
    tx.disconnect()
    rx.disconnect()
    tx.loop_stop()
    rx.loop_stop()
    measured = {e[0] for e in events[n_warm:]}
    with lock:
        lat = np.array([(got[k] - sent[k]) / 1e6 for k in got if k in sent and k in measured])
        last = max((got[k] for k in got if k in measured), default=0)
    first = min((sent[k] for k in measured if k in sent), default=0)
    if trace is not None:
        with lock:
            for eid, _, _ in events[n_warm:]:
                lat_ms = (got[eid] - sent[eid]) / 1e6 if eid in got else float("nan")
                trace.append(((sent[eid] - first) / 1e9, lat_ms))
    span = (last - first) / 1e9 if lat.size else float("nan")
    return {
        "rate": rate,
        "events": n - n_warm,
        "warmup_events": n_warm,
        "received": int(lat.size),
        "publish_s": round(publish_s, 3),
        "events_per_s": round(lat.size / span, 1) if lat.size else 0.0,
        "p50_ms": round(float(np.percentile(lat, 50)), 3) if lat.size else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 3) if lat.size else None,
        "max_ms": round(float(lat.max()), 3) if lat.size else None,
        "load_cpu_ms_per_event": round(1e3 * load_cpu / max(1, n), 3),
    }


def contender(
    role: str,
    port: int,
    folder: Path,
    kind: str,
    pseudonymise: bool = True,
    journal: str = "sync",
    apply_every: float = 0.2,
    worker: int = 0,
    workers: int = 1,
    key: str | None = None,
) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, __file__, "--role", role, "--port", str(port), "--folder", str(folder),
           "--engine", kind, "--journal", journal, "--apply-every", str(apply_every),
           "--worker", str(worker), "--workers", str(workers)]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONWARNINGS": "ignore::DeprecationWarning",
        # As deployed: a secret key of this run (the same for every worker, so that they
        # agree on pseudonyms and partitions) and a vault per worker in the temporary folder.
        "AUTOPERSONA_PSEUDONYMISE": "1" if pseudonymise else "0",
        "AUTOPERSONA_PSEUDONYM_KEY": key or secrets.token_hex(24),
        "AUTOPERSONA_VAULT": str(folder / f"vault{worker}.duckdb"),
    }
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for raw in p.stderr or []:
            lines.put(raw.decode(errors="replace"))

    threading.Thread(target=read, daemon=True).start()
    tail: list[str] = []
    end = time.monotonic() + 60
    while time.monotonic() < end:  # wait until it is subscribed (imports, connect, subscribe)
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if p.poll() is not None:
                break
            continue
        tail.append(line)
        if "subscribed to" in line:
            return p
    p.kill()
    raise SystemExit(f"{role} did not start:\n{''.join(tail[-30:])}")


def stop(p: subprocess.Popen[bytes]) -> dict[str, Any]:
    p.send_signal(signal.SIGTERM)
    try:
        out, _ = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        raise SystemExit("contender did not stop within 60 s of SIGTERM") from None
    lines = out.decode().strip().splitlines()
    if p.returncode != 0 or not lines:
        raise SystemExit(f"contender failed ({p.returncode})")
    r: dict[str, Any] = json.loads(lines[-1])
    return r


def _merged(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """The counters of several engine processes as one (sums; CPU by thread summed)."""
    out: dict[str, Any] = {}
    for st in stats:
        for k, v in st.items():
            if k == "thread_cpu_s":
                acc = out.setdefault(k, {})
                for t, c in v.items():
                    acc[t] = acc.get(t, 0.0) + c
            elif k == "gc":
                acc = out.setdefault(k, {})
                for g, (n, total, longest) in v.items():
                    n0, t0, l0 = acc.get(g, (0, 0.0, 0.0))
                    acc[g] = [n0 + n, round(t0 + total, 2), max(l0, longest)]
            elif isinstance(v, int | float) and not isinstance(v, bool):
                out[k] = out.get(k, 0) + v
            else:
                out.setdefault(k, v)
    return out


def plot_traces(traces: list[tuple[float, str, float, float]], out: Path) -> None:
    """Latency against publish time, echo and engine, one panel per rate, p99 dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = sorted({r for r, *_ in traces})
    fig, axes = plt.subplots(
        len(rates), 1, figsize=(10, 3.2 * max(1, len(rates))), squeeze=False, sharex=True
    )
    for ax, rate in zip(axes[:, 0], rates, strict=True):
        for path, colour in (("echo", "tab:gray"), ("engine", "tab:blue")):
            at = np.array([t for r, p, t, _ in traces if r == rate and p == path])
            lat = np.array([x for r, p, _, x in traces if r == rate and p == path])
            ok = np.isfinite(lat)
            if not ok.any():
                continue
            p99 = float(np.percentile(lat[ok], 99))
            ax.scatter(at[ok], lat[ok], s=2, color=colour, alpha=0.5, label=f"{path}")
            ax.axhline(p99, color=colour, linestyle="--", linewidth=1,
                       label=f"{path} p99 {p99:.2f} ms")  # fmt: skip
        ax.set_yscale("log")
        ax.set_ylabel("latency ms")
        ax.set_title(f"{rate:,.0f} events/s offered", fontsize=10)
        ax.legend(loc="upper right", fontsize=8, markerscale=4)
    axes[-1, 0].set_xlabel("seconds since the first measured publish")
    fig.suptitle("MQTT publish -> head-unit message received")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rates", type=float, nargs="+", default=[1000.0, 5000.0])
    ap.add_argument("--seconds", type=float, default=3.0, help="Measured publishing time per rate.")
    ap.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        help="Seconds of events at the same rate before the measured ones, not counted.",
    )
    ap.add_argument("--drain", type=float, default=15.0, help="Most seconds to wait for the tail.")
    ap.add_argument("--engine", choices=["minimal", "strategy"], default="minimal")
    ap.add_argument(
        "--no-pseudonymise",
        action="store_true",
        help="Run the engine without pseudonymisation (default: on, as deployed: VINs "
        "pseudonymised on arrival, head-unit topics re-identified through the audited vault).",
    )
    ap.add_argument(
        "--journal",
        choices=["sync", "nosync", "off"],
        default="sync",
        help="The engine's hot path: journal with fdatasync per batch (default, as deployed), "
        "journal without fdatasync (survives a killed process, not a power cut), or off "
        "(one DuckDB transaction per batch).",
    )
    ap.add_argument(
        "--apply-every",
        type=float,
        default=0.2,
        help="How often the engine applies its journal to the warehouse (seconds; as "
        "`autopersona run --apply-every`).  A value longer than the run defers every "
        "warehouse write to shutdown, which measures the hot path without them.",
    )
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="Engine processes, as `autopersona run --partition K/N` (each its own "
        "warehouse and vault; every one reads every event and processes its persons').",
    )
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--plot",
        type=Path,
        help="Draw every measured event's latency against its publish time, echo and "
        "engine, one panel per rate (PNG), with each one's p99.",
    )
    ap.add_argument(
        "--trace",
        type=Path,
        help="Write every measured event's publish time and latency to this CSV "
        "(rate, path, seconds since the first measured publish, latency ms) to see when "
        "the slow ones happened.",
    )
    ap.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--role", choices=["engine", "echo"], help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.role == "engine":
        run_engine(a.port, a.folder, a.engine, a.journal, a.apply_every, a.worker, a.workers)
        return 0
    if a.role == "echo":
        run_echo(a.port)
        return 0
    rows = []
    traces: list[tuple[float, str, float, float]] = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ap-bench-engine-") as tmp:
        folder = Path(tmp)
        broker, port = start_broker(folder)
        try:
            for rate in a.rates:
                echo = contender("echo", port, folder, a.engine)
                tr_echo: list[tuple[float, float]] = []
                e = load(port, rate, a.seconds, a.drain, a.warmup, tr_echo)
                e["cpu_ms_per_event"] = round(
                    1e3 * stop(echo)["cpu_s"] / max(1, e["received"] + e["warmup_events"]), 3
                )
                for f in [*folder.glob("bench*.duckdb*"), *folder.glob("vault*.duckdb*")]:
                    if f.is_dir():
                        shutil.rmtree(f, ignore_errors=True)
                    else:
                        f.unlink(missing_ok=True)
                key = secrets.token_hex(24)
                pseudo = not a.no_pseudonymise
                engines = []
                for k in range(a.workers):
                    opts = (a.journal, a.apply_every, k, a.workers, key)
                    engines.append(contender("engine", port, folder, a.engine, pseudo, *opts))
                tr_engine: list[tuple[float, float]] = []
                g = load(port, rate, a.seconds, a.drain, a.warmup, tr_engine)
                traces += [(rate, "echo", *x) for x in tr_echo]
                traces += [(rate, "engine", *x) for x in tr_engine]
                stats = _merged([stop(eng) for eng in engines])
                g["cpu_ms_per_event"] = round(1e3 * stats["cpu_s"] / max(1, stats["processed"]), 3)
                rows.append({"rate": rate, "echo": e, "engine": g, "engine_stats": stats})
        finally:
            broker.terminate()
            broker.wait(10)
    if a.trace is not None:
        with a.trace.open("w") as fh:
            fh.write("rate,path,at_s,latency_ms\n")
            fh.writelines(f"{r:g},{p},{t:.6f},{x:.3f}\n" for r, p, t, x in traces)
    if a.plot is not None:
        plot_traces(traces, a.plot)
    if a.json:
        out = {"load_average": [load_before[0], os.getloadavg()[0]], "runs": rows}
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return 0
    print(
        f"engine: {a.engine} decision engine"
        f"{f', {a.workers} partitioned processes' if a.workers > 1 else ''}; "
        "DuckDB warehouse file; Mosquitto on loopback; "
        f"pseudonymisation {'off' if a.no_pseudonymise else 'on (audited vault file)'}; "
        f"hot path: {JOURNAL_LABEL[a.journal].format(every=a.apply_every)}"
    )
    print(
        f"machine: {os.cpu_count()} CPUs, load average before/after "
        f"{load_before[0]:.1f} / {os.getloadavg()[0]:.1f} (1 min)"
    )
    head = ("offered/s", "path", "received", "events/s", "p50 ms", "p99 ms", "max ms", "p99 / echo")
    print("  ".join(f"{h:>10}" for h in head))
    for r in rows:
        for name in ("echo", "engine"):
            x = r[name]
            ratio = (
                f"{x['p99_ms'] / r['echo']['p99_ms']:.1f}x"
                if name == "engine" and x["p99_ms"] and r["echo"]["p99_ms"]
                else ""
            )
            print(
                "  ".join(
                    f"{'-' if v is None else v:>10}"
                    for v in (
                        f"{r['rate']:.0f}", name, f"{x['received']}/{x['events']}",
                        x["events_per_s"], x["p50_ms"], x["p99_ms"], x["max_ms"], ratio,
                    )
                )
            )  # fmt: skip
        st = r["engine_stats"]
        n = max(1, st["processed"])
        print(
            f"{'':>10}  engine: {st['processed']} processed in {st['batches']} batches "
            f"({st['processed'] / max(1, st['batches']):.0f}/batch), {st['sent']} sent; "
            f"thread wall time per event: decide+commit {1e3 * st['process_s'] / n:.2f} ms, "
            f"dispatch {1e3 * st['dispatch_s'] / n:.2f} ms"
        )
        threads = st.get("thread_cpu_s") or {}
        if threads:
            parts = ", ".join(f"{k} {1e3 * v / n:.3f}" for k, v in sorted(threads.items()))
            rest = st["cpu_s"] - sum(threads.values())
            print(
                f"{'':>10}  engine CPU ms per event by thread: {parts}, "
                f"other (paho network loops, DuckDB workers, main) {1e3 * rest / n:.3f}"
            )
        if st.get("gc"):
            parts = ", ".join(
                f"gen {g}: {n} ({total:.0f} ms, longest {longest:.1f} ms)"
                for g, (n, total, longest) in sorted(st["gc"].items())
            )
            print(f"{'':>10}  engine garbage collections: {parts}")
        ce, cg = r["echo"]["cpu_ms_per_event"], r["engine"]["cpu_ms_per_event"]
        le, lg = r["echo"]["load_cpu_ms_per_event"], r["engine"]["load_cpu_ms_per_event"]
        print(
            f"{'':>10}  CPU time per event (load-independent): echo client {ce:.3f} ms, "
            f"engine process {cg:.3f} ms -> at most ~{1e3 / max(cg, 1e-9):,.0f} events/s "
            "per engine process on one free core"
        )
        print(
            f"{'':>10}  load generator (publisher + receiver) CPU per event: {le:.3f} ms "
            f"during echo, {lg:.3f} ms during engine"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
