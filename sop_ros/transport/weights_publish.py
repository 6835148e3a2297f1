"""Learner side of weights distribution: one push through the routers, repair on request.

Keys (``sop/<fleet>/weights/...``):

- ``manifest``: the WeightsManifest JSON. Put once per version (live robots
  hear it at once) and answered by a queryable with the latest one, which is
  how late joiners and robots that missed the put get it. We use a plain
  queryable rather than ``zenoh.ext.AdvancedPublisher``'s history cache
  because the latter is marked unstable in zenoh-python and a queryable works
  the same through routers, under access control, with no extension on the
  robot.
- ``push``: the manifest again (attachment header ``manifest``), then every
  chunk once (attachment ``chunk`` {version, index, sha256}, payload the raw
  bytes), reliable with CongestionControl.BLOCK. Routers copy each sample to
  every subscriber, so the learner's egress is one copy whatever the fleet
  size. The manifest leads the chunks on the same key because Zenoh orders
  samples per subscriber only: on a separate key it could arrive after them.
- ``chunk/<version>/<index>``: a queryable answering one chunk (raw bytes)
  for repair and late joiners, for the newest ``keep_versions`` versions.

Threads: ``publish`` runs on the caller's thread (it blocks while pushing);
the queryables answer on Zenoh's threads and read the versions table under a
lock.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import zenoh

from sop_ros.core.config import check_ranges, setting
from sop_ros.core.errors import WeightsError
from sop_ros.core.weights import WeightsManifest, iter_chunks
from sop_ros.transport.session import encode_header, fleet_field, fleet_key, reply_error

__all__ = ["WeightsPublisher", "WeightsPublisherConfig", "weights_keys"]


def weights_keys(fleet: str) -> dict[str, str]:
    """The weights key space of ``fleet``: manifest, push and chunk-prefix keys."""
    return {
        "manifest": fleet_key(fleet, "weights", "manifest"),
        "push": fleet_key(fleet, "weights", "push"),
        "chunk": fleet_key(fleet, "weights", "chunk"),
    }


@dataclass(frozen=True, kw_only=True)
class WeightsPublisherConfig:
    """Settings of the learner's weights publisher."""

    fleet: str = fleet_field()
    # Versions whose chunks stay available for repair (the newest first).
    keep_versions: int = setting(2, "versions served for repair", low=1, high=100)

    def __post_init__(self) -> None:
        check_ranges(self)


class WeightsPublisher:
    """Publishes weights versions to every robot of a fleet.

    Args:
        session: An open Zenoh session (the caller closes it).
        config: Settings.
    """

    def __init__(self, session: zenoh.Session, config: WeightsPublisherConfig | None = None):
        self.config = config or WeightsPublisherConfig()
        self.keys = weights_keys(self.config.fleet)
        self._session = session
        self._lock = threading.Lock()
        # version -> (manifest, file); the newest keep_versions, written by publish().
        self._versions: dict[int, tuple[WeightsManifest, Path]] = {}
        self._manifest_pub, self._push_pub = (
            session.declare_publisher(
                self.keys[name],
                congestion_control=zenoh.CongestionControl.BLOCK,
                reliability=zenoh.Reliability.RELIABLE,
            )
            for name in ("manifest", "push")
        )
        self._manifest_q = session.declare_queryable(self.keys["manifest"], self._answer_manifest)
        self._chunk_q = session.declare_queryable(f"{self.keys['chunk']}/*/*", self._answer_chunk)

    @property
    def latest(self) -> WeightsManifest | None:
        """The newest published manifest, if any."""
        with self._lock:
            return self._versions[max(self._versions)][0] if self._versions else None

    def publish(self, path: Path, manifest: WeightsManifest, *, push: bool = True) -> None:
        """Announce ``manifest`` and push the file's chunks once to every subscriber.

        The file must stay in place, unchanged, while this version is served.

        Args:
            path: The safetensors file the manifest describes.
            manifest: Its manifest (see ``WeightsManifest.for_file``).
            push: False only announces the version (robots then fetch every chunk on request).

        Raises:
            WeightsError: the version is not newer than the last one, or the file's size differs.
        """
        path = Path(path)
        if path.stat().st_size != manifest.size_bytes:
            raise WeightsError(f"{path} has {path.stat().st_size} bytes, manifest says {manifest.size_bytes}")
        with self._lock:
            if self._versions and manifest.version <= max(self._versions):
                raise WeightsError(f"version {manifest.version} is not newer than {max(self._versions)}")
            self._versions[manifest.version] = (manifest, path)
            for old in sorted(self._versions)[: -self.config.keep_versions]:
                del self._versions[old]
        self._manifest_pub.put(manifest.to_json(), encoding="application/json")
        if push:
            self._push(path, manifest)

    def _push(self, path: Path, manifest: WeightsManifest) -> None:
        self._push_pub.put(manifest.to_json(), attachment=encode_header("manifest", version=manifest.version))
        with path.open("rb") as stream:
            for index, data in enumerate(iter_chunks(stream, manifest.chunk_size_bytes)):
                header = encode_header(
                    "chunk", version=manifest.version, index=index, sha256=manifest.chunk_sha256[index]
                )
                self._push_pub.put(data, attachment=header)

    def _answer_manifest(self, query: zenoh.Query) -> None:
        latest = self.latest
        if latest is None:
            reply_error(query, "no weights published yet", code="empty", retry=True)
        else:
            query.reply(self.keys["manifest"], latest.to_json())

    def _answer_chunk(self, query: zenoh.Query) -> None:
        # A wildcard query (``sop/**``, ``.../chunk/*/*``) also reaches here: answer it, never raise.
        tail = str(query.key_expr)[len(self.keys["chunk"]) + 1 :].split("/")
        try:
            version_text, index_text = tail
            version, index = int(version_text), int(index_text)
        except ValueError:
            reply_error(
                query,
                f"bad chunk key {query.key_expr}: ask for chunk/<version>/<index>",
                code="bad_request",
                retry=False,
            )
            return
        with self._lock:
            entry = self._versions.get(version)
        if entry is None:
            reply_error(query, f"version {version} is no longer served", code="gone", retry=False)
            return
        manifest, path = entry
        if not 0 <= index < manifest.chunk_count:
            reply_error(query, f"chunk {index} out of range", code="bad_request", retry=False)
            return
        with path.open("rb") as stream:
            data = os.pread(stream.fileno(), manifest.chunk_length(index), index * manifest.chunk_size_bytes)
        query.reply(query.key_expr, data)

    def close(self) -> None:
        """Stop serving; robots keep what they have and fetch the rest once a publisher is back.

        Zenoh may drop pushed samples still queued when the publisher is undeclared, so a
        learner that exits right after ``publish`` leaves robots to repair from the next one.
        """
        self._chunk_q.undeclare()
        self._manifest_q.undeclare()
        self._push_pub.undeclare()
        self._manifest_pub.undeclare()
