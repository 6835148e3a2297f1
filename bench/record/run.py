"""Benchmark: record 3 × 640×480 cameras @ 30 Hz + joint_states @ 100 Hz for 60 s.

The recorder node runs as its own process (as under ``ros2 launch``); a second
process publishes and counts. Afterwards the bag is read with the ``mcap``
reader and its per-topic counts are compared with the published ones (the
baseline of this run). The recorder's CPU time and peak RSS come from
/proc while it runs. Writes bench/out/record/result.json and a PNG.

    .venv/bin/python bench/record/run.py [--duration-s 60] [--raw]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sop_ros.core.spool import Spool
from sop_ros.nodes.registry import NODES

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "out" / "record"


def proc_stats(pid: int) -> tuple[float, int]:
    """(CPU seconds used, current RSS bytes) of a process, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu_s = (int(stat[11]) + int(stat[12])) / ticks
    rss = int(stat[21]) * os.sysconf("SC_PAGE_SIZE")
    return cpu_s, rss


def count_bag(bag: Path) -> dict[str, int]:
    from mcap.reader import make_reader

    counts: dict[str, int] = {}
    for path in bag.glob("*.mcap"):
        with path.open("rb") as stream:
            for _, channel, _ in make_reader(stream).iter_messages():
                counts[channel.topic] = counts.get(channel.topic, 0) + 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--raw", action="store_true", help="record raw Image instead of JPEG")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        ROS_DOMAIN_ID=os.environ.get("ROS_DOMAIN_ID", "77"),
        PYTHONUNBUFFERED="1",
    )
    cameras = "head,hand_left,hand_right"
    with tempfile.TemporaryDirectory() as tmp:
        spool = Path(tmp) / "spool"
        params = {
            "spool_dir": str(spool),
            "cameras": f"[{cameras}]",
            "compressed_images": "false" if args.raw else "true",
        }
        recorder = subprocess.Popen(
            NODES["recorder"].command(params),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        time.sleep(2.0)
        publisher = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "publisher.py"),
                "--duration-s",
                str(args.duration_s),
                "--cameras",
                cameras,
                *(["--raw"] if args.raw else []),
            ],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        cpu0, _ = proc_stats(recorder.pid)
        t0 = time.monotonic()
        peak_rss = 0
        samples = []
        while publisher.poll() is None:
            cpu, rss = proc_stats(recorder.pid)
            peak_rss = max(peak_rss, rss)
            samples.append((time.monotonic() - t0, cpu - cpu0, rss))
            time.sleep(0.5)
        cpu1, _ = proc_stats(recorder.pid)
        wall = time.monotonic() - t0
        published = json.loads(publisher.stdout.read().strip().splitlines()[-1])
        deadline = time.monotonic() + 30
        ready = Spool(spool).ready
        while time.monotonic() < deadline and not (ready.exists() and any(ready.iterdir())):
            time.sleep(0.2)
        recorder.terminate()
        log = recorder.communicate(timeout=20)[0]
        bags = list(ready.iterdir()) if ready.exists() else []
        if not bags:
            print(log)
            raise SystemExit("no bag was written")
        recorded = count_bag(bags[0])
        bag_bytes = sum(p.stat().st_size for p in bags[0].iterdir())

    rows = []
    dropped_total = 0
    for topic, sent in published["published"].items():
        got = recorded.get(f"/{topic}", 0)
        dropped_total += max(0, sent - got)
        rows.append(
            {"topic": topic, "published": sent, "recorded": got, "ratio": got / sent if sent else 0.0}
        )
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} CPU cores",
        "duration_s": args.duration_s,
        "images": "raw rgb8" if args.raw else "JPEG q90",
        "topics": rows,
        "dropped": dropped_total,
        "recorder_cpu_percent_of_one_core": 100.0 * (cpu1 - cpu0) / wall,
        "recorder_peak_rss_mb": peak_rss / 2**20,
        "bag_mb": bag_bytes / 2**20,
        "raw_image_mb": published["raw_image_bytes"] / 2**20,
        "bag_vs_raw": bag_bytes / published["raw_image_bytes"],
    }
    (OUT / "result.json").write_text(json.dumps(result, indent=2))
    for row in rows:
        print(
            f"{row['topic']:<40} published {row['published']:>6}  recorded {row['recorded']:>6}  "
            f"ratio {row['ratio']:.4f}"
        )
    print(
        f"dropped {dropped_total}; "
        f"recorder CPU {result['recorder_cpu_percent_of_one_core']:.0f}% of one core, "
        f"peak RSS {result['recorder_peak_rss_mb']:.0f} MB; bag {result['bag_mb']:.0f} MB = "
        f"{result['bag_vs_raw']:.3f} × raw images ({result['raw_image_mb']:.0f} MB)"
    )
    _plot(samples, result)
    return 0 if dropped_total == 0 else 1


def _plot(samples: list[tuple[float, float, int]], result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s[0] for s in samples]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    cpu = [100 * (b[1] - a[1]) / max(1e-6, b[0] - a[0]) for a, b in itertools.pairwise(samples)]
    ax1.plot(t[1:], cpu)
    ax1.set_ylabel("recorder CPU (% of a core)")
    ax2.plot(t, [s[2] / 2**20 for s in samples])
    ax2.set_ylabel("recorder RSS (MB)")
    ax2.set_xlabel("time (s)")
    fig.suptitle(
        f"Recording 3 cameras @ 30 Hz + joints @ 100 Hz ({result['images']}): {result['dropped']} dropped"
    )
    fig.tight_layout()
    fig.savefig(OUT / "record.png", dpi=100)


if __name__ == "__main__":
    sys.exit(main())
