"""Weights fan-out: one file to N robots through one router, vs one raw TCP copy.

Usage:
    .venv/bin/python bench/weights/run.py                       # 780 MB, N = 1 2 4 8
    .venv/bin/python bench/weights/run.py --size-mib 128 --robots 1 2

Processes: a router, N robot processes each running a WeightsFetcher, and this
process running the WeightsPublisher (the learner). For each N the time runs
from ``publish()`` to the last robot's ``on_ready`` (every chunk and the whole
file verified, fsynced and renamed into staging). The learner pushes each
chunk once; the router copies it to every robot. Baseline: one raw TCP copy of
the same file (sender child → receiver here, written to disk). Results:
``bench/out/weights/weights.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench" / "upload"))

from loopback import free_port, role_tcp_sender, tcp_copy  # noqa: E402

from sop_ros.core.weights import TensorSpec, WeightsManifest  # noqa: E402
from sop_ros.transport.session import RetryPolicy, open_session  # noqa: E402
from sop_ros.transport.weights_fetch import WeightsFetcher, WeightsFetcherConfig  # noqa: E402
from sop_ros.transport.weights_publish import WeightsPublisher, WeightsPublisherConfig  # noqa: E402

CONFIGS = REPO / "config" / "zenoh"
OUT = REPO / "bench" / "out" / "weights"


def make_weights(path: Path, size_bytes: int, chunk: int) -> WeightsManifest:
    """A safetensors file holding one uint8 tensor of about ``size_bytes`` random bytes."""
    header = json.dumps(
        {"w": {"dtype": "U8", "shape": [size_bytes], "data_offsets": [0, size_bytes]}}
    ).encode()
    header += b" " * (-len(header) % 8)
    block = os.urandom(16 << 20)
    with path.open("wb") as out:
        out.write(len(header).to_bytes(8, "little") + header)
        for offset in range(0, size_bytes, len(block)):
            out.write(block[: min(len(block), size_bytes - offset)])
    return WeightsManifest.for_file(
        path,
        version=1,
        step=25,
        base_model_id="bench",
        config_hash="0" * 64,
        tensors=(TensorSpec(name="w", dtype="U8", shape=(size_bytes,)),),
        chunk_size_bytes=chunk,
    )


def role_router(endpoint: str) -> None:
    session = open_session(CONFIGS / "test_router.json5", {"listen/endpoints": [endpoint]})
    print("READY", flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    session.close()


def role_robot(endpoint: str, staging: Path) -> None:
    session = open_session(CONFIGS / "test_client.json5", {"connect/endpoints": [endpoint]})
    done = []
    config = WeightsFetcherConfig(
        fleet="bench", push_idle_s=2.0, manifest_poll_s=3600.0, retry=RetryPolicy(timeout_s=30.0)
    )
    fetcher = WeightsFetcher(session, staging, on_ready=lambda m, p: done.append(time.time()), config=config)
    time.sleep(0.5)  # let the subscription reach the router
    print("READY", flush=True)
    while not done:
        time.sleep(0.01)
    stats = fetcher.stats
    print(
        json.dumps({"done": done[0], "pushed": stats.chunks_pushed, "fetched": stats.chunks_fetched}),
        flush=True,
    )
    fetcher.close()
    session.close()


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def fan_out(work: Path, path: Path, manifest: WeightsManifest, robots: int) -> dict:
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    router = spawn("--role", "router", "--endpoint", endpoint)
    assert router.stdout.readline().strip() == "READY"
    fleet = [
        spawn("--role", "robot", "--endpoint", endpoint, "--staging", str(work / f"n{robots}-robot{i}"))
        for i in range(robots)
    ]
    for proc in fleet:
        assert proc.stdout.readline().strip() == "READY"
    session = open_session(CONFIGS / "test_client.json5", {"connect/endpoints": [endpoint]})
    publisher = WeightsPublisher(session, WeightsPublisherConfig(fleet="bench"))
    time.sleep(0.3)
    start = time.time()
    publisher.publish(path, manifest)
    pushed_s = time.time() - start
    reports = [json.loads(proc.stdout.readline()) for proc in fleet]
    for proc in fleet:
        proc.wait(timeout=60)
    publisher.close()
    session.close()
    router.stdin.close()
    router.wait(timeout=30)
    seconds = max(r["done"] for r in reports) - start
    return {"robots": robots, "seconds": seconds, "publish_call_s": pushed_s, "reports": reports}


def plot(result: dict, path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ns = [r["robots"] for r in result["fan_out"]]
    ax.plot(ns, [r["seconds"] for r in result["fan_out"]], "o-", label="Zenoh push via router")
    ax.axhline(result["tcp_s"], color="grey", ls="--", label="one raw TCP copy")
    ax.axhline(2 * result["fan_out"][0]["seconds"], color="tab:red", ls=":", label="target: 2 × N=1")
    ax.set_xlabel("robots")
    ax.set_ylabel("s until every robot holds a verified file")
    ax.set_title(f"{result['size_mib']} MiB weights")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=744)  # 780 MB
    parser.add_argument("--chunk-mib", type=int, default=4)
    parser.add_argument("--robots", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--role", choices=["router", "robot", "tcp"])
    parser.add_argument("--endpoint")
    parser.add_argument("--staging", type=Path)
    parser.add_argument("--port", type=int)
    parser.add_argument("--bag", type=Path)
    parser.add_argument("--chunk", type=int)
    args = parser.parse_args()
    if args.role == "router":
        return role_router(args.endpoint)
    if args.role == "robot":
        return role_robot(args.endpoint, args.staging)
    if args.role == "tcp":
        return role_tcp_sender(args.port, args.bag, args.chunk)

    OUT.mkdir(parents=True, exist_ok=True)
    chunk = args.chunk_mib << 20
    with tempfile.TemporaryDirectory(dir=os.environ.get("SOP_BENCH_TMP")) as tmp:
        work = Path(tmp)
        path = work / "weights.safetensors"
        manifest = make_weights(path, args.size_mib << 20, chunk)
        tcp_s = tcp_copy(__file__, path, work / "copy.bin", chunk)["seconds"]
        (work / "copy.bin").unlink()
        print(f"raw TCP copy: {tcp_s:.2f} s", flush=True)
        runs = []
        for n in args.robots:
            runs.append(fan_out(work, path, manifest, n))
            print(f"N={n}: {runs[-1]['seconds']:.2f} s", flush=True)
            for staged in work.glob(f"n{n}-robot*"):
                for f in staged.iterdir():
                    f.unlink()
    base = runs[0]["seconds"]
    result = {
        "size_mib": args.size_mib,
        "size_bytes": manifest.size_bytes,
        "chunk_mib": args.chunk_mib,
        "tcp_s": tcp_s,
        "fan_out": runs,
        "ratio_vs_first": {str(r["robots"]): r["seconds"] / base for r in runs},
        "ratio_first_vs_tcp": base / tcp_s,
        "host": {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version()},
    }
    (OUT / "weights.json").write_text(json.dumps(result, indent=1))
    plot(result, OUT / "weights.png")
    last = runs[-1]
    print(
        f"{args.size_mib} MiB: N={runs[0]['robots']} {base:.2f} s ({base / tcp_s:.2f}× one raw TCP copy); "
        f"N={last['robots']} {last['seconds']:.2f} s = {last['seconds'] / base:.2f}× N={runs[0]['robots']} "
        "(target ≤ 2)"
    )


if __name__ == "__main__":
    main()
