"""Fleet transport over Zenoh: bag upload robot → learner, weights learner → robots.

Never imports rclpy; nodes wrap these classes. Nothing from the network is
unpickled: headers are versioned JSON, payloads raw bytes.
"""

from __future__ import annotations

from sop_ros.transport.errors import BagRejectedError
from sop_ros.transport.ingest import IngestConfig, IngestServer, StoredEpisode
from sop_ros.transport.security import client_overrides, fleet_access_control, router_overrides
from sop_ros.transport.session import (
    BackgroundSession,
    LinkState,
    RateLimiter,
    RemoteError,
    RetryPolicy,
    fleet_key,
    fleet_setting,
    open_session,
)
from sop_ros.transport.spool import SpoolConfig, SpoolUploader
from sop_ros.transport.upload import BagUploader, UploadConfig, UploadProgress, UploadResult, UploadStats
from sop_ros.transport.weights_fetch import FetchStats, WeightsFetcher, WeightsFetcherConfig
from sop_ros.transport.weights_publish import WeightsPublisher, WeightsPublisherConfig, weights_keys

__all__ = [
    "BackgroundSession",
    "BagRejectedError",
    "BagUploader",
    "FetchStats",
    "IngestConfig",
    "IngestServer",
    "LinkState",
    "RateLimiter",
    "RemoteError",
    "RetryPolicy",
    "SpoolConfig",
    "SpoolUploader",
    "StoredEpisode",
    "UploadConfig",
    "UploadProgress",
    "UploadResult",
    "UploadStats",
    "WeightsFetcher",
    "WeightsFetcherConfig",
    "WeightsPublisher",
    "WeightsPublisherConfig",
    "client_overrides",
    "fleet_access_control",
    "fleet_key",
    "fleet_setting",
    "open_session",
    "router_overrides",
    "weights_keys",
]
