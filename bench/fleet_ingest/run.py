"""Fleet load on one learner: N robots record and upload at once; ingest throughput, latency, RSS, CPU.

Usage:
    .venv/bin/python bench/fleet_ingest/run.py                       # N = 1 8 32 64, ~5 minutes
    .venv/bin/python bench/fleet_ingest/run.py --robots 1 8 --record-s 10

Processes: one learner (the Zenoh router embedded in its session, as
``sop cloud`` runs it, an IngestServer with the real ``validate_bag`` that
reads every message, a WeightsPublisher) and up to ``--robot-procs`` robot
processes, each running N / procs robots as threads. A robot is what the
bridge runs: its own Zenoh client session, a SpoolUploader with the real
BagUploader, and a WeightsFetcher. A recorder thread per robot drops a new
episode bag into the robot's ``ready/`` every ``--episode-s`` seconds: a real
rosbag2 MCAP bag (zstd chunks) of 3 compressed cameras at 30 fps, ~44 Mb/s of
recording, its metadata naming a fresh episode (the MCAP is a hard link to one
of a few pre-recorded ones, so making a bag costs the robot no CPU).

Per N: weights fan-out first (one ``--weights-mib`` file, publish → every
robot's ``on_ready``), then ``--record-s`` seconds of recording, then up to
``--drain-s`` seconds for the backlog to drain. Commit latency runs from the
moment a bag appears in ``ready/`` to its commit ack (queueing behind the
robot's earlier bags included). Throughput is committed bytes over the time
from the first bag to the last commit. Learner RSS and CPU are sampled from
/proc; whole-machine CPU (user, system, iowait, idle) from /proc/stat.
Baseline: a raw TCP loopback copy of a 512 MiB file, measured in the same run.
No training runs: on 2 cores the ingest alone uses them (see the CPU figures).

Results: ``bench/results/<tag>/<name>.json`` and ``.png`` (name ``fleet_ingest`` by default).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench" / "upload"))

import numpy as np  # noqa: E402
from loopback import free_port, role_tcp_sender, tcp_copy  # noqa: E402

from sop_ros.core.spool import Spool  # noqa: E402
from sop_ros.core.types import EpisodeMeta, Outcome, new_episode_id  # noqa: E402
from sop_ros.storage import typestore as ts  # noqa: E402
from sop_ros.storage.bagio import close_writer, open_writer, validate_bag  # noqa: E402
from sop_ros.transport.ingest import IngestConfig, IngestServer  # noqa: E402
from sop_ros.transport.session import RetryPolicy, open_session  # noqa: E402
from sop_ros.transport.spool import SpoolConfig, SpoolUploader  # noqa: E402
from sop_ros.transport.upload import BagUploader, UploadConfig  # noqa: E402
from sop_ros.transport.weights_fetch import WeightsFetcher, WeightsFetcherConfig  # noqa: E402
from sop_ros.transport.weights_publish import WeightsPublisher, WeightsPublisherConfig  # noqa: E402

CONFIGS = REPO / "config" / "zenoh"
FLEET = "bench"
CAMERAS = ("front", "left_wrist", "right_wrist")
FPS = 30
# 3 cameras × 30 fps × 61 kB = 5.5 MB/s = 44 Mb/s of recording per robot.
FRAME_BYTES = 61_000
TEMPLATES = 3


# Bags ----------------------------------------------------------------------------------------


def record_template(parent: Path, index: int, episode_s: float) -> Path:
    """Record one real episode bag (3 compressed cameras + joint states) with random image bytes."""
    meta = EpisodeMeta(
        episode_id=f"tmplrobot-20260101T00000{index}-0000000{index}",
        robot_id="tmplrobot",
        task="pick",
        instruction="pick the cube",
        outcome=Outcome.SUCCESS,
        policy_versions=("v0001",),
        start_ns=0,
        end_ns=int(episode_s * 1e9),
    )
    bag = parent / meta.episode_id
    writer = open_writer(bag, bag_name=f"template{index}")
    store = ts.typestore()
    cams = {
        c: writer.add_connection(f"/{c}/image/compressed", ts.COMPRESSED_IMAGE, typestore=store)
        for c in CAMERAS
    }
    joints = writer.add_connection("/joint_states", ts.JOINT_STATE, typestore=store)
    rng = np.random.default_rng(index)
    for frame in range(int(episode_s * FPS)):
        stamp = int(frame * 1e9 / FPS)
        for cam, conn in cams.items():
            data = rng.integers(0, 256, FRAME_BYTES, dtype="uint8")
            msg = ts.make(ts.COMPRESSED_IMAGE, header=ts.header(stamp, cam), format="jpeg", data=data)
            writer.write(conn, stamp, ts.serialize(msg))
        msg = ts.make(
            ts.JOINT_STATE, header=ts.header(stamp), name=["j0", "j1"], position=np.array([0.0, 1.0])
        )
        writer.write(joints, stamp, ts.serialize(msg))
    close_writer(writer, meta.to_custom_data())
    return bag


def drop_episode(template: Path, spool: Spool, robot: str, on_ready) -> None:
    """Put a new episode in the spool's ``ready/``: the template's MCAP hard-linked, its metadata renamed.

    ``on_ready(episode, size_bytes)`` is called just before the bag appears in ``ready/``.
    """
    old_id = template.name
    episode = new_episode_id(robot)
    tmp = spool.recording / episode
    tmp.mkdir(parents=True)
    size = 0
    for path in template.iterdir():
        if path.suffix == ".mcap":
            os.link(path, tmp / path.name)
        else:
            text = path.read_text().replace(old_id, episode).replace("tmplrobot", robot)
            (tmp / path.name).write_text(text)
        size += (tmp / path.name).stat().st_size
    on_ready(episode, size)
    tmp.rename(spool.ready / episode)  # what the recorder does: a bag in ready/ is complete


# Roles (child processes) ---------------------------------------------------------------------


def write_json(path: Path, obj: object) -> None:
    """Write atomically: another process polls for ``path`` and must never read it half-written."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def wait_for(path: Path, deadline_s: float = 120.0) -> dict:
    end = time.time() + deadline_s
    while time.time() < end:
        if path.exists():
            return json.loads(path.read_text())
        time.sleep(0.05)
    raise TimeoutError(f"{path} never appeared")


def proc_cpu_s() -> float:
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def role_learner(endpoint: str, work: Path, weights: Path, manifest_json: Path, workers: int) -> None:
    """The learner: router + ingest + weights publisher; samples its own RSS and CPU."""
    from sop_ros.core.weights import WeightsManifest

    session = open_session(CONFIGS / "test_router.json5", {"listen/endpoints": [endpoint]})
    publisher = WeightsPublisher(session, WeightsPublisherConfig(fleet=FLEET))
    commits: list[float] = []
    server = IngestServer(
        session,
        work / "store",
        validate_bag=validate_bag,
        on_episode=lambda stored: commits.append(time.time()),
        config=IngestConfig(fleet=FLEET, workers=workers),
    )
    samples = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            samples.append([time.time(), proc_rss_mib(), proc_cpu_s()])

    threading.Thread(target=sample, daemon=True).start()
    write_json(work / "learner.ready", {})
    schedule = wait_for(work / "schedule.json")
    time.sleep(max(0.0, schedule["publish_at"] - time.time()))
    publish_t = time.time()
    publisher.publish(weights, WeightsManifest.from_json(manifest_json.read_bytes()))
    wait_for(work / "robots.done", deadline_s=schedule["end_at"] - time.time() + 120)
    stop.set()
    result = {"publish_t": publish_t, "samples": samples, "commits": commits}
    server.close()
    publisher.close()
    session.close()
    write_json(work / "learner.json", result)


class Robot:
    """One robot: session, spool uploader, recorder thread and weights fetcher."""

    def __init__(self, name: str, endpoint: str, work: Path, templates: list[Path]):
        self.name = name
        self.spool = Spool(work / "robots" / name).create()
        self.session = open_session(CONFIGS / "test_client.json5", {"connect/endpoints": [endpoint]})
        retry = RetryPolicy(timeout_s=30.0, max_attempts=1000, backoff_s=0.2, max_backoff_s=2.0)
        uploader = BagUploader(self.session, UploadConfig(fleet=FLEET, robot_id=name, retry=retry))
        self.ready_t: dict[str, float] = {}
        self.sizes: dict[str, int] = {}
        self.committed: list[dict] = []
        self.spooler = SpoolUploader(
            uploader,
            self.spool.root,
            config=SpoolConfig(poll_period_s=0.2, keep_uploaded=0),
            on_uploaded=self._done,
        )
        self.weights_t: float | None = None
        self.fetcher = WeightsFetcher(
            self.session,
            self.spool.root / "weights",
            on_ready=lambda m, p: setattr(self, "weights_t", time.time()),
            config=WeightsFetcherConfig(fleet=FLEET),
        )
        self.templates = templates

    def _done(self, result) -> None:
        now = time.time()
        self.committed.append(
            {
                "episode": result.episode_id,
                "bytes": self.sizes[result.episode_id],
                "latency_s": now - self.ready_t[result.episode_id],
                "upload_s": result.duration_s,
                "attempts": result.stats.attempts,
                "busy_resends": result.stats.busy_resends,
                "t": now,
            }
        )

    def record(self, start_at: float, stop_at: float, episode_s: float, offset_s: float) -> None:
        k, next_t = 0, start_at + offset_s
        while next_t < stop_at:
            time.sleep(max(0.0, next_t - time.time()))
            drop_episode(self.templates[k % len(self.templates)], self.spool, self.name, self._ready)
            k += 1
            next_t += episode_s

    def _ready(self, episode: str, size: int) -> None:
        self.sizes[episode] = size
        self.ready_t[episode] = time.time()

    def backlog_bytes(self) -> int:
        return sum(self.sizes.get(p.name, 0) for p in self.spool.ready.iterdir())


def role_robots(endpoint: str, work: Path, names: list[str], out: Path) -> None:
    templates = sorted((work / "templates").iterdir())
    robots = [Robot(n, endpoint, work, templates) for n in names]
    write_json(out.with_suffix(".ready"), {})
    schedule = wait_for(work / "schedule.json")
    stop = threading.Event()
    uploaders = [threading.Thread(target=r.spooler.run, args=(stop,), daemon=True) for r in robots]
    for t in uploaders:
        t.start()
    n = len(schedule["robots"])
    recorders = [
        threading.Thread(
            target=r.record,
            args=(
                schedule["record_at"],
                schedule["record_end"],
                schedule["episode_s"],
                # Robots start episodes spread over one episode length, as a real fleet does.
                schedule["episode_s"] * schedule["robots"].index(r.name) / n,
            ),
            daemon=True,
        )
        for r in robots
    ]
    for t in recorders:
        t.start()
    backlog = []
    while time.time() < schedule["end_at"]:
        backlog.append([time.time(), sum(r.backlog_bytes() for r in robots)])
        if time.time() > schedule["record_end"] and backlog[-1][1] == 0:
            break
        time.sleep(0.5)
    stop.set()
    for t in uploaders:
        t.join(60)
    result = {
        "episodes": [e | {"robot": r.name} for r in robots for e in r.committed],
        "recorded": sum(len(r.sizes) for r in robots),
        "recorded_bytes": sum(sum(r.sizes.values()) for r in robots),
        "backlog": backlog,
        "weights_t": [r.weights_t for r in robots],
    }
    for r in robots:
        r.fetcher.close()
        r.session.close()
    write_json(out, result)


# Orchestration -------------------------------------------------------------------------------


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, *args])


def machine_cpu() -> list[int]:
    """user+nice, system+irq+softirq, iowait, idle jiffies of the whole machine."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return [f[0] + f[1], f[2] + f[5] + f[6], f[4], f[3]]


def run_fleet(args: argparse.Namespace, work: Path, n: int, weights: Path, manifest: Path) -> dict:
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    names = [f"robot{i:02d}" for i in range(n)]
    learner_args = ["--weights", str(weights), "--manifest", str(manifest), "--workers", str(args.workers)]
    procs = [spawn("--role", "learner", "--endpoint", endpoint, "--work", str(work), *learner_args)]
    try:
        wait_for(work / "learner.ready")
        groups = [names[i :: args.robot_procs] for i in range(min(n, args.robot_procs))]
        outs = [work / f"robots{i}.json" for i in range(len(groups))]
        for group, out in zip(groups, outs, strict=True):
            procs.append(spawn("--role", "robots", "--endpoint", endpoint, "--work", str(work),
                               "--names", ",".join(group), "--out", str(out)))  # fmt: skip
        for out in outs:
            wait_for(out.with_suffix(".ready"), deadline_s=300)
        now = time.time()
        schedule = {
            "robots": names,
            "publish_at": now + 2.0,
            "record_at": now + 2.0 + args.weights_s,
            "record_end": now + 2.0 + args.weights_s + args.record_s,
            "end_at": now + 2.0 + args.weights_s + args.record_s + args.drain_s,
            "episode_s": args.episode_s,
        }
        write_json(work / "schedule.json", schedule)
        time.sleep(max(0.0, schedule["record_at"] - time.time()))
        cpu_before = machine_cpu()
        results = [wait_for(out, deadline_s=schedule["end_at"] - time.time() + 180) for out in outs]
        cpu_after = machine_cpu()
        write_json(work / "robots.done", {})
        learner = wait_for(work / "learner.json", deadline_s=120)
        for p in procs:
            p.wait(60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    episodes = sorted((e for r in results for e in r["episodes"]), key=lambda e: e["t"])
    recorded = sum(r["recorded"] for r in results)
    latencies = sorted(e["latency_s"] for e in episodes)
    committed = sum(e["bytes"] for e in episodes)
    first_ready, record_end = schedule["record_at"], schedule["record_end"]
    # Throughput while the fleet records: bytes committed during the recording window over its length
    # (equals the recording rate when the learner keeps up, its capacity when it does not) ...
    during = sum(e["bytes"] for e in episodes if first_ready <= e["t"] <= record_end)
    # ... and while the backlog drains after recording stops (capacity, nothing new arriving).
    after = [e for e in episodes if e["t"] > record_end]
    drain_s = after[-1]["t"] - record_end if len(after) > 1 else 0.0
    drain_mb_s = sum(e["bytes"] for e in after) / 1e6 / drain_s if drain_s else None
    backlog: dict[int, int] = {}
    for r in results:
        last = {round(t - first_ready): b for t, b in r["backlog"]}  # each process's last sample per second
        for key, b in last.items():
            backlog[key] = backlog.get(key, 0) + b
    samples = [s for s in learner["samples"] if first_ready <= s[0] <= (episodes[-1]["t"] if episodes else 0)]
    cpu_s = samples[-1][2] - samples[0][2] if len(samples) > 1 else 0.0
    cpu_cores = cpu_s / (samples[-1][0] - samples[0][0]) if len(samples) > 1 else 0.0
    sampled_mb = sum(e["bytes"] for e in episodes if len(samples) > 1 and e["t"] <= samples[-1][0]) / 1e6
    weights_t = [t for r in results for t in r["weights_t"]]
    delta = [a - b for a, b in zip(cpu_after, cpu_before, strict=True)]
    total = sum(delta) or 1

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")

    return {
        "robots": n,
        "episodes_recorded": recorded,
        "episodes_committed": len(episodes),
        "episode_mb": committed / max(1, len(episodes)) / 1e6,
        "offered_mb_s": n * FRAME_BYTES * FPS * len(CAMERAS) / 1e6,
        "ingest_mb_s": during / 1e6 / args.record_s,
        "drain_mb_s": drain_mb_s,
        "commit_latency_p50_s": pct(0.50),
        "commit_latency_p99_s": pct(0.99),
        "upload_p50_s": sorted(e["upload_s"] for e in episodes)[len(episodes) // 2] if episodes else None,
        "attempts_max": max((e["attempts"] for e in episodes), default=0),
        "busy_resends": sum(e["busy_resends"] for e in episodes),
        "learner_rss_peak_mib": max((s[1] for s in learner["samples"]), default=0.0),
        "learner_cpu_cores": cpu_cores,
        # Learner CPU per committed MB (ms): what sets the ceiling of a learner host with its own cores.
        "learner_cpu_ms_per_mb": 1e3 * cpu_s / sampled_mb if sampled_mb else None,
        "machine_cpu_share": {
            k: v / total for k, v in zip(("user", "system", "iowait", "idle"), delta, strict=True)
        },
        "backlog_mb": sorted([t, b / 1e6] for t, b in backlog.items()),
        "backlog_left_mb": (sum(r["recorded_bytes"] for r in results) - committed) / 1e6,
        # Backlog when recording stops over the recording time: how fast it grew.
        "backlog_growth_mb_s": backlog.get(round(args.record_s), 0) / 1e6 / args.record_s,
        "weights_fanout_s": (max(weights_t) - learner["publish_t"]) if all(weights_t) else None,
        "weights_robots_ready": sum(1 for t in weights_t if t),
    }


def _against_n(ax, ylabel: str, title: str) -> None:
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("robots N")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    ns = [r["robots"] for r in rows]
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(13, 3.8))
    a.plot(ns, [r["ingest_mb_s"] for r in rows], "o-", label="committed while recording")
    drained = [(r["robots"], r["drain_mb_s"]) for r in rows if r["drain_mb_s"]]
    if drained:
        a.plot(*zip(*drained, strict=True), "s", label="committed while draining the backlog")
    a.plot(ns, [r["offered_mb_s"] for r in rows], "k--", label="recorded by the fleet")
    a.axhline(result["tcp_mb_s"], color="grey", ls=":", label=f"raw TCP copy ({result['tcp_mb_s']:.0f})")
    _against_n(a, "MB/s", "throughput")
    b.plot(ns, [r["commit_latency_p50_s"] for r in rows], "o-", label="p50")
    b.plot(ns, [r["commit_latency_p99_s"] for r in rows], "s-", label="p99")
    _against_n(b, "s, bag ready → commit ack", "episode commit latency")
    for r in rows:
        t, mb = zip(*r["backlog_mb"], strict=True) if r["backlog_mb"] else ((), ())
        c.plot(t, mb, label=f"N={r['robots']}")
    c.set_xlabel("s since recording started")
    c.set_ylabel("MB waiting on robots")
    c.set_title("backlog")
    c.legend(fontsize=7)
    fig.suptitle(f"{result['machine']}, {result['date']}: one learner, {result['episode_s']:.0f} s episodes")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--robots", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--episode-s", type=float, default=5.0)
    parser.add_argument("--record-s", type=float, default=20.0)
    parser.add_argument("--drain-s", type=float, default=25.0)
    parser.add_argument("--weights-s", type=float, default=10.0, help="time given to the weights fan-out")
    parser.add_argument("--weights-mib", type=int, default=32)
    parser.add_argument("--robot-procs", type=int, default=4)
    parser.add_argument("--workers", type=int, default=4, help="learner ingest worker threads")
    parser.add_argument("--tag", default="2core_2026-12-05")
    parser.add_argument("--name", default="fleet_ingest", help="file stem of the JSON and PNG")
    parser.add_argument("--machine", default="2-core VM")
    parser.add_argument("--work", type=Path, default=None, help="parent of the learner store (a disk)")
    parser.add_argument("--role", default="main")
    parser.add_argument("--endpoint")
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--manifest", type=Path)
    parser.add_argument("--names")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--port", type=int)
    parser.add_argument("--bag", type=Path)
    parser.add_argument("--chunk", type=int)
    args = parser.parse_args()
    if args.role == "learner":
        role_learner(args.endpoint, args.work, args.weights, args.manifest, args.workers)
        return
    if args.role == "robots":
        role_robots(args.endpoint, args.work, args.names.split(","), args.out)
        return
    if args.role == "tcp":
        role_tcp_sender(args.port, args.bag, args.chunk)
        return

    spec = importlib.util.spec_from_file_location("weights_bench", REPO / "bench" / "weights" / "run.py")
    weights_bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(weights_bench)
    load = {"before": os.getloadavg()}
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="sop-fleet-", dir=args.work) as tmp,
        tempfile.TemporaryDirectory(
            prefix="sop-fleet-robots-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None
        ) as shm,
    ):
        disk, ram = Path(tmp), Path(shm)
        # Baseline: one raw TCP loopback copy, written to the same disk as the store.
        blob = disk / "blob.bin"
        with blob.open("wb") as out:
            for _ in range(32):
                out.write(os.urandom(16 << 20))
        tcp = tcp_copy(__file__, blob, disk / "blob.copy", 4 << 20)
        tcp_mb_s = blob.stat().st_size / 1e6 / tcp["seconds"]
        blob.unlink()
        (disk / "blob.copy").unlink()
        weights = ram / "weights.safetensors"
        manifest = weights_bench.make_weights(weights, args.weights_mib << 20, 4 << 20)
        (ram / "manifest.json").write_bytes(manifest.to_json())
        (ram / "templates").mkdir()
        for i in range(TEMPLATES):
            record_template(ram / "templates", i, args.episode_s)
        for n in args.robots:
            work = disk / f"n{n}"
            robots_dir = ram / f"n{n}"
            robots_dir.mkdir()
            (robots_dir / "templates").symlink_to(ram / "templates")
            # Robots (spools, weights staging) live in RAM: real robots each have their own disk.
            work.mkdir()
            (work / "robots").symlink_to(robots_dir)
            (work / "templates").symlink_to(ram / "templates")
            row = run_fleet(args, work, n, weights, ram / "manifest.json")
            print(json.dumps({k: v for k, v in row.items() if k != "backlog_mb"}), flush=True)
            rows.append(row)
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(robots_dir, ignore_errors=True)
    load["after"] = os.getloadavg()
    result = {
        "machine": args.machine,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        "uptime_before": uptime_before,
        "uptime_after": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "loadavg": load,
        "episode_s": args.episode_s,
        "record_s": args.record_s,
        "drain_s": args.drain_s,
        "weights_mib": args.weights_mib,
        "tcp_mb_s": tcp_mb_s,
        "rows": rows,
    }
    out_dir = REPO / "bench" / "results" / args.tag
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{args.name}.json").write_text(json.dumps(result, indent=1))
    plot(result, out_dir / f"{args.name}.png")
    print(f"wrote {out_dir / args.name}.json")


if __name__ == "__main__":
    main()
