"""Bag upload throughput over Zenoh (loopback) vs a raw TCP copy of the same file, and bridge RSS.

Usage:
    .venv/bin/python bench/upload/run.py                  # 1 GiB bag
    .venv/bin/python bench/upload/run.py --size-mib 2048  # the 2 GB target size

The learner side (router + IngestServer) runs in this process; the robot side
(BagUploader, i.e. what the bridge node runs) in a child process whose peak RSS
is reported. The baseline is a child sending the same file over a plain TCP
socket (same chunk size) to a receiver here that writes it to disk, as the
ingest does. The upload includes everything the protocol does: per-chunk
sha256 on both ends, acks, whole-file digest, commit and the atomic move. The
validator is a stub (the benchmark measures transport, not bag parsing).
``--topology embedded`` (default) serves the ingest from the router's own
session, as a learner with an embedded router does; ``separate`` makes the
learner a client of a router (robot → router → learner, two hops). Results:
``bench/out/upload/upload_<topology>_c<chunk MiB>_w<in flight>.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from sop_ros.core.types import EpisodeMeta  # noqa: E402
from sop_ros.transport.ingest import IngestConfig, IngestServer  # noqa: E402
from sop_ros.transport.session import open_session  # noqa: E402
from sop_ros.transport.upload import BagUploader, UploadConfig  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loopback import child, free_port, peak_rss_mib, role_tcp_sender, tcp_copy  # noqa: E402

CONFIGS = REPO / "config" / "zenoh"
OUT = REPO / "bench" / "out" / "upload"


def make_bag(parent: Path, size_bytes: int, robot: str) -> Path:
    bag = parent / f"{robot}-bench-episode"
    bag.mkdir(parents=True)
    (bag / "metadata.yaml").write_text("rosbag2_bagfile_information: {version: 9}\n")
    block = os.urandom(16 << 20)
    with (bag / "episode_0.mcap").open("wb") as out:
        written = 0
        while written < size_bytes:
            n = min(len(block), size_bytes - written)
            out.write(block[:n])
            written += n
    return bag


# Child roles --------------------------------------------------------------------------------


def role_uploader(endpoint: str, bag: Path, chunk: int, in_flight: int) -> None:
    base_rss = peak_rss_mib()
    session = open_session(CONFIGS / "test_client.json5", {"connect/endpoints": [endpoint]})
    config = UploadConfig(fleet="bench", robot_id="r1", chunk_size_bytes=chunk, max_in_flight=in_flight)
    start = time.perf_counter()
    result = BagUploader(session, config).upload(bag)
    seconds = time.perf_counter() - start
    session.close()
    print(
        json.dumps(
            {"seconds": seconds, "state": result.state, "rss_mib": peak_rss_mib(), "base_mib": base_rss}
        )
    )


# Parent -------------------------------------------------------------------------------------


def zenoh_upload(work: Path, bag: Path, chunk: int, in_flight: int, embedded: bool) -> dict:
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    router = open_session(CONFIGS / "test_router.json5", {"listen/endpoints": [endpoint]})
    # Embedded: the learner's own session is the router (as in `sop demo`), one TCP hop.
    # Separate: the learner is a client of a router, two hops (robot → router → learner).
    session = (
        router if embedded else open_session(CONFIGS / "test_client.json5", {"connect/endpoints": [endpoint]})
    )

    def stub_validator(path: Path) -> EpisodeMeta:
        return EpisodeMeta(episode_id=bag.name, robot_id="r1", task="bench", instruction="")

    store = work / "store"
    server = IngestServer(session, store, validate_bag=stub_validator, config=IngestConfig(fleet="bench"))
    try:
        return child(
            __file__,
            "--role", "uploader", "--endpoint", endpoint, "--bag", str(bag),
            "--chunk", str(chunk), "--in-flight", str(in_flight),
        )  # fmt: skip
    finally:
        server.close()
        if not embedded:
            session.close()
        router.close()


def plot(result: dict, path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        return  # the JSON holds every figure

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    names = ["raw TCP copy", "Zenoh upload"]
    values = [result["tcp_mb_s"], result["zenoh_mb_s"]]
    ax.bar(names, values, color=["grey", "tab:blue"])
    ax.set_ylabel("MB/s (loopback)")
    ax.set_title(f"{result['size_mib']} MiB bag: ratio {result['ratio']:.2f} (target ≥ 0.8)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--chunk-mib", type=int, default=4)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--topology", choices=["embedded", "separate"], default="embedded")
    parser.add_argument("--role", choices=["uploader", "tcp"])
    parser.add_argument("--endpoint")
    parser.add_argument("--port", type=int)
    parser.add_argument("--bag", type=Path)
    parser.add_argument("--chunk", type=int)
    args = parser.parse_args()
    if args.role == "uploader":
        role_uploader(args.endpoint, args.bag, args.chunk, args.in_flight)
        return
    if args.role == "tcp":
        role_tcp_sender(args.port, args.bag, args.chunk)
        return

    chunk = args.chunk_mib << 20
    size = args.size_mib << 20
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.environ.get("SOP_BENCH_TMP")) as tmp:
        work = Path(tmp)
        bag = make_bag(work / "robot", size, "r1")
        mcap = bag / "episode_0.mcap"
        tcp_runs, zenoh_runs = [], []
        for i in range(args.repeats):
            tcp_runs.append(tcp_copy(__file__, mcap, work / f"copy{i}.bin", chunk))
            (work / f"copy{i}.bin").unlink()
            zenoh_runs.append(
                zenoh_upload(work / f"z{i}", bag, chunk, args.in_flight, args.topology == "embedded")
            )
            print(
                f"run {i}: tcp {tcp_runs[-1]['seconds']:.2f} s, zenoh {zenoh_runs[-1]['seconds']:.2f} s",
                flush=True,
            )
    tcp_s = min(r["seconds"] for r in tcp_runs)
    zenoh_s = min(r["seconds"] for r in zenoh_runs)
    result = {
        "size_mib": args.size_mib,
        "chunk_mib": args.chunk_mib,
        "in_flight": args.in_flight,
        "topology": args.topology,
        "tcp_s": tcp_s,
        "zenoh_s": zenoh_s,
        "tcp_mb_s": size / tcp_s / 1e6,
        "zenoh_mb_s": size / zenoh_s / 1e6,
        "ratio": tcp_s / zenoh_s,
        "uploader_peak_rss_mib": max(r["rss_mib"] for r in zenoh_runs),
        "uploader_start_rss_mib": zenoh_runs[0]["base_mib"],
        "runs": {"tcp": tcp_runs, "zenoh": zenoh_runs},
        "host": {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version()},
    }
    stem = f"upload_{args.topology}_c{args.chunk_mib}_w{args.in_flight}"
    (OUT / f"{stem}.json").write_text(json.dumps(result, indent=1))
    plot(result, OUT / f"{stem}.png")
    r = result
    print(
        f"{args.size_mib} MiB: raw TCP {r['tcp_mb_s']:.0f} MB/s, Zenoh upload {r['zenoh_mb_s']:.0f} MB/s, "
        f"ratio {r['ratio']:.2f} (target >= 0.8); uploader peak RSS {r['uploader_peak_rss_mib']:.0f} MiB "
        "(target < 300)"
    )


if __name__ == "__main__":
    main()
