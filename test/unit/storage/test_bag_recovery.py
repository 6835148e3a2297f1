from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from bag_helpers import BagWriter, make_meta
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

from sop_ros.core.spool import REASON_FILE, Spool
from sop_ros.core.types import InterventionSegment, Outcome
from sop_ros.storage.bagio import episode_meta, mcap_files, validate_bag
from sop_ros.storage.errors import BagError
from sop_ros.storage.recorder import START_META_FILE, EpisodeRecorder
from sop_ros.storage.recovery import RECOVERED_KEY, RecoveryAction, recover_spool

EPISODE = "robot_1-crash"
GROUP = 5  # messages between two flushes


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes, list[int]]:
    """An un-finished recording: (mcap bytes, start metadata, file size after each flushed group)."""
    spool = tmp_path_factory.mktemp("source")
    recorder = EpisodeRecorder(spool, quota_bytes=1 << 30, flush_period_s=3600)
    partial = recorder.start(make_meta(EPISODE, start_ns=100))
    bag = BagWriter(recorder)
    (mcap,) = mcap_files(partial)
    sizes = []
    for group in range(3):
        for i in range(GROUP):
            stamp = 1_000 + group * 100 + i
            if group == 1 and i == 0:
                bag.intervention(stamp, True)
            elif group == 1 and i == 3:
                bag.intervention(stamp, False)
            else:
                bag.command(stamp, [float(group), float(i)])
        recorder.flush()
        sizes.append(mcap.stat().st_size)
    data, meta = mcap.read_bytes(), (partial / START_META_FILE).read_bytes()
    recorder.abort("fixture done")
    return data, meta, sizes


def plant(root: Path, mcap: bytes, meta: bytes | None) -> Path:
    """Lay out a spool as a killed recorder leaves it."""
    partial = Spool(root).create().partial_path(EPISODE)
    partial.mkdir()
    (partial / f"{EPISODE}_0.mcap").write_bytes(mcap)
    if meta is not None:
        (partial / START_META_FILE).write_bytes(meta)
    return partial


@pytest.mark.parametrize(
    ("cut", "expected"),
    [
        (lambda s: 0, 0),  # empty file
        (lambda s: 5, 0),  # inside the magic
        (lambda s: 30, 0),  # inside the first chunk
        (lambda s: s[0] - 3, GROUP),  # first chunk whole, its message index cut
        (lambda s: s[0], GROUP),
        (lambda s: (s[0] + s[1]) // 2, GROUP),  # second chunk cut in half
        (lambda s: s[1], 2 * GROUP),
        (lambda s: s[2], 3 * GROUP),  # everything flushed, no footer
    ],
)
def test_truncated_bag_is_recovered_up_to_the_break(
    tmp_path: Path, crashed: tuple[bytes, bytes, list[int]], cut, expected: int
) -> None:
    data, meta, sizes = crashed
    offset = cut(sizes)
    partial = plant(tmp_path, data[:offset], meta)

    (report,) = recover_spool(tmp_path)

    spool = Spool(tmp_path)
    assert report.partial == partial
    assert not partial.exists()
    assert report.quarantined is not None and report.quarantined.parent == spool.quarantine
    # The original bytes are kept, unchanged, with the reason beside them.
    assert (report.quarantined / f"{EPISODE}_0.mcap").read_bytes() == data[:offset]
    assert (report.quarantined / REASON_FILE).read_text().strip() == report.reason
    assert report.message_count == max(expected, 0)
    if expected == 0:
        assert report.action is RecoveryAction.QUARANTINED
        assert report.bag is None and list(spool.ready.iterdir()) == []
        assert "nothing recoverable" in report.reason
        return
    assert report.action is RecoveryAction.RECOVERED
    assert report.bag == spool.ready / EPISODE
    (recovered,) = mcap_files(report.bag)
    with recovered.open("rb") as file:
        decoded = list(make_reader(file, decoder_factories=[DecoderFactory()]).iter_decoded_messages())
    assert len(decoded) == expected
    meta_out = validate_bag(report.bag)
    assert meta_out.outcome is Outcome.INCOMPLETE
    assert meta_out.task == "stack" and meta_out.start_ns == 100
    assert meta_out.end_ns == 1_000 + (expected // GROUP - 1) * 100 + GROUP - 1
    if expected >= 2 * GROUP:
        assert meta_out.interventions == (InterventionSegment(start_ns=1_100, end_ns=1_103),)
    else:
        assert meta_out.interventions == ()
    assert list(spool.recording.iterdir()) == []


def test_recovery_is_idempotent_and_cleans_interrupted_copies(
    tmp_path: Path, crashed: tuple[bytes, bytes, list[int]]
) -> None:
    data, meta, sizes = crashed
    plant(tmp_path, data[: sizes[1]], meta)
    spool = Spool(tmp_path)
    stale = spool.recording / f"{EPISODE}.recovering"
    stale.mkdir()
    (stale / "junk").write_text("left by an interrupted recovery")

    (first,) = recover_spool(tmp_path)
    assert first.action is RecoveryAction.RECOVERED
    assert not stale.exists()
    assert recover_spool(tmp_path) == []
    assert RECOVERED_KEY in (first.bag / "metadata.yaml").read_text()


def test_partial_whose_bag_was_already_recovered_goes_to_quarantine(
    tmp_path: Path, crashed: tuple[bytes, bytes, list[int]]
) -> None:
    data, meta, sizes = crashed
    plant(tmp_path, data[: sizes[0]], meta)
    (Spool(tmp_path).ready / EPISODE).mkdir()
    (report,) = recover_spool(tmp_path)
    assert report.action is RecoveryAction.QUARANTINED
    assert "exists already" in report.reason


def test_partial_without_metadata_is_quarantined(
    tmp_path: Path, crashed: tuple[bytes, bytes, list[int]]
) -> None:
    data, _meta, _sizes = crashed
    plant(tmp_path, data, None)
    (report,) = recover_spool(tmp_path)
    assert report.action is RecoveryAction.QUARANTINED
    assert START_META_FILE in report.reason
    assert (report.quarantined / f"{EPISODE}_0.mcap").read_bytes() == data


def test_bag_closed_before_the_crash_is_published_as_is(tmp_path: Path) -> None:
    recorder = EpisodeRecorder(tmp_path, quota_bytes=1 << 30)
    recorder.start(make_meta(EPISODE))
    BagWriter(recorder).command(10, [0.0])
    bag = recorder.finish(make_meta(EPISODE, outcome=Outcome.SUCCESS))
    # As if the process died after closing, before the rename.
    bag.rename(recorder.spool.partial_path(EPISODE))

    (report,) = recover_spool(tmp_path)
    assert report.action is RecoveryAction.PUBLISHED
    assert report.bag == bag and report.quarantined is None and report.message_count == 1
    assert episode_meta(bag).outcome is Outcome.SUCCESS


CHILD = textwrap.dedent(
    """
    import sys
    from bag_helpers import BagWriter, jpeg, make_meta
    from sop_ros.storage.recorder import EpisodeRecorder

    recorder = EpisodeRecorder(sys.argv[1], quota_bytes=1 << 30, flush_period_s=0.0)
    recorder.start(make_meta("robot_1-crash"))
    bag = BagWriter(recorder)
    frame = jpeg((0, 0, 255), size=64)
    i = 0
    while True:
        bag.frame("front", 1_000 + i, frame)
        bag.command(1_000 + i, [float(i)])
        i += 1
        if i == 50:
            print("written", 2 * i, flush=True)
    """
)


def test_sigkilled_writer_is_recovered(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), *sys.path]))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        line = child.stdout.readline()
        assert line.startswith("written"), line
        written = int(line.split()[1])
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    (report,) = recover_spool(tmp_path)
    assert report.action is RecoveryAction.RECOVERED
    assert report.message_count >= written  # flush_period_s=0: every message reached the OS
    meta = validate_bag(report.bag)
    assert meta.outcome is Outcome.INCOMPLETE
    original = report.quarantined / "robot_1-crash_0.mcap"
    assert original.stat().st_size > 0
    shutil.rmtree(tmp_path)


def test_failed_recovery_leaves_the_partial_for_the_next_try(
    tmp_path: Path, crashed: tuple[bytes, bytes, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, meta, sizes = crashed
    partial = plant(tmp_path, data[: sizes[1]], meta)

    def disk_full(*args: object, **kwargs: object) -> None:
        raise BagError("cannot close bag: [Errno 28] No space left on device")

    monkeypatch.setattr("sop_ros.storage.recovery.close_writer", disk_full)
    (report,) = recover_spool(tmp_path)
    assert report.action is RecoveryAction.FAILED and "No space left" in report.reason
    assert (partial / f"{EPISODE}_0.mcap").read_bytes() == data[: sizes[1]]
    assert sorted(p.name for p in Spool(tmp_path).recording.iterdir()) == [partial.name]

    monkeypatch.undo()
    (report,) = recover_spool(tmp_path)
    assert report.action is RecoveryAction.RECOVERED and report.message_count == 2 * GROUP
