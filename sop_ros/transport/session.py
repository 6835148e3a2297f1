"""Zenoh sessions, the fleet key space and the small wire helpers every exchange uses.

Apart from :class:`BackgroundSession`, nothing here keeps state between calls;
a ``zenoh.Session`` is thread-safe and may be shared by every uploader, server
and fetcher of one process.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zenoh

if TYPE_CHECKING:
    from zenoh.handlers import Handler

from sop_ros.core.config import check_ranges, derived, setting
from sop_ros.core.errors import ConfigError, IntegrityError, TransportError

__all__ = [
    "DEFAULT_FLEET",
    "WIRE_SCHEMA",
    "BackgroundSession",
    "LinkState",
    "RateLimiter",
    "RemoteError",
    "RetryPolicy",
    "decode_header",
    "encode_header",
    "fleet_field",
    "fleet_key",
    "fleet_setting",
    "open_session",
    "query_once",
    "reply_error",
    "start_query",
    "wait_reply",
]

_log = logging.getLogger(__name__)

# Version of every JSON header this package puts on the wire.
WIRE_SCHEMA = 1

_FORBIDDEN_KEY_CHARS = set("/*$?#@ ")

# The fleet a robot or learner belongs to: the first segment of every key (sop/<fleet>/...).
DEFAULT_FLEET = "default"
_FLEET_DESCRIPTION = "fleet name, first segment of the Zenoh key space (sop/<fleet>/...)"


def fleet_setting() -> Any:
    """The one ``fleet`` setting of a process (robot link or learner); its transports copy it."""
    return setting(DEFAULT_FLEET, _FLEET_DESCRIPTION, read_only=True)


def fleet_field() -> Any:
    """A transport config's ``fleet``: copied from the owner's :func:`fleet_setting`, no parameter."""
    return derived(DEFAULT_FLEET, _FLEET_DESCRIPTION)


def fleet_key(fleet: str, *parts: str) -> str:
    """Return ``sop/<fleet>/<parts...>``, refusing parts that would change the key's meaning.

    Raises:
        ConfigError: ``fleet`` or a part is empty or holds ``/``, ``*``, ``$``, ``?``, ``#``, ``@``
            or a space (a robot id like ``robot/*`` would otherwise match other robots' keys).
    """
    for part in (fleet, *parts):
        if not part or _FORBIDDEN_KEY_CHARS & set(part):
            raise ConfigError(f"{part!r} cannot be a key segment (empty or holds one of '/*$?#@ ')")
    return "/".join(("sop", fleet, *parts))


def open_session(
    config: Path | str | Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> zenoh.Session:
    """Open a Zenoh session from a json5 file or a dict, then apply ``overrides``.

    Args:
        config: Path of a json5 config file, or a mapping in the same layout.
        overrides: ``{"connect/endpoints": ["tcp/127.0.0.1:7447"], ...}``; each key is a
            ``/``-separated path into the config, each value any JSON value.

    Returns:
        An open ``zenoh.Session``; the caller closes it.

    Raises:
        ConfigError: the file is missing or a value is rejected by Zenoh.
        TransportError: Zenoh could not open the session (e.g. no router reachable).
    """
    try:
        if isinstance(config, Mapping):
            conf = zenoh.Config.from_json5(json.dumps(dict(config)))
        else:
            path = Path(config)
            if not path.is_file():
                raise ConfigError(f"zenoh config {path} does not exist")
            conf = zenoh.Config.from_file(str(path))
        for key, value in (overrides or {}).items():
            conf.insert_json5(key, json.dumps(value))
    except zenoh.ZError as err:
        raise ConfigError(f"invalid zenoh config: {err}") from None
    try:
        return zenoh.open(conf)
    except zenoh.ZError as err:
        raise TransportError(f"cannot open zenoh session: {err}") from None


class LinkState:
    """Where a :class:`BackgroundSession` stands (plain strings, shown as they are in diagnostics)."""

    CONNECTING = "connecting"  # no session yet; attempts go on in the background
    CONNECTED = "connected"  # session open, a router reached
    DISCONNECTED = "disconnected"  # session open, the router lost; Zenoh reconnects by itself
    FAILED = "failed"  # the config is wrong or on_open failed; no more attempts
    CLOSED = "closed"


class BackgroundSession:
    """A client Zenoh session opened on a thread of its own, retried until it opens.

    The constructor returns at once: a robot starts, records and spools with no
    learner in sight, and connects when the learner appears. Each attempt is
    bounded (``connect/timeout_ms`` is set to ``attempt_timeout_s``); after a
    failure the next attempt waits ``first_delay_s``, doubling up to
    ``max_delay_s``. Once open, the same thread watches whether a router is
    reached (Zenoh reconnects a client by itself). Each change of state is
    logged once (``sop_ros.transport.session``), never once per attempt.

    Args:
        config: json5 file or mapping, as for :func:`open_session`.
        overrides: As for :func:`open_session`.
        on_open: Called once, on the connecting thread, with the open session
            (declare subscribers, start workers there). If it raises, the
            session is closed and the state is FAILED.
        name: What the session is for, in log lines ("bridge", ...).
        attempt_timeout_s: Longest one attempt to reach a router may take (s).
        first_delay_s: Wait after the first failed attempt (s).
        max_delay_s: Longest wait between attempts (s).
        watch_period_s: How often an open session's router link is checked (s).
    """

    def __init__(
        self,
        config: Path | str | Mapping[str, Any],
        overrides: Mapping[str, Any] | None = None,
        *,
        on_open: Callable[[Any], None],
        name: str = "zenoh",
        attempt_timeout_s: float = 3.0,
        first_delay_s: float = 0.5,
        max_delay_s: float = 10.0,
        watch_period_s: float = 1.0,
    ) -> None:
        if attempt_timeout_s <= 0 or first_delay_s < 0 or max_delay_s < first_delay_s or watch_period_s <= 0:
            raise ConfigError(
                f"bad retry timing: attempt {attempt_timeout_s} s, delays {first_delay_s}..{max_delay_s} s, "
                f"watch {watch_period_s} s"
            )
        self.name = name
        self._config = config
        self._overrides = {**(overrides or {}), "connect/timeout_ms": round(attempt_timeout_s * 1000)}
        self._on_open = on_open
        self._attempt_timeout_s = attempt_timeout_s
        self._retry = RetryPolicy(
            timeout_s=max(0.05, attempt_timeout_s), backoff_s=first_delay_s, max_backoff_s=max_delay_s
        )
        self._watch_period_s = watch_period_s
        self._lock = threading.Lock()
        self._state = LinkState.CONNECTING
        self._since = time.monotonic()
        self._error = ""
        self._attempts = 0
        self._session: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{name}-zenoh", daemon=True)
        self._thread.start()

    @property
    def state(self) -> str:
        """One of the :class:`LinkState` values."""
        with self._lock:
            return self._state

    def status(self) -> tuple[str, float, str, int]:
        """Return (state, seconds in that state, last error, attempts so far) in one consistent read."""
        with self._lock:
            return self._state, time.monotonic() - self._since, self._error, self._attempts

    @property
    def session(self) -> Any:
        """The open session, or None while connecting (and after close)."""
        with self._lock:
            return self._session

    def close(self) -> None:
        """Stop connecting or watching and close the session; returns within about one attempt's time."""
        self._stop.set()
        self._thread.join(timeout=self._attempt_timeout_s + 2.0)
        with self._lock:
            session, self._session = self._session, None
        self._set(LinkState.CLOSED)
        if session is not None:
            try:
                session.close()
            except zenoh.ZError as err:
                _log.warning("%s: closing the zenoh session: %s", self.name, err)

    def _set(self, state: str, error: str = "") -> bool:
        """Record ``state``; True when it differs from the previous one (the caller logs it)."""
        with self._lock:
            changed = state != self._state
            if changed:
                self._state, self._since = state, time.monotonic()
            self._error = error or (self._error if state == LinkState.CONNECTING else "")
            return changed

    def _run(self) -> None:
        session = self._connect()
        if session is None:
            return
        try:
            self._on_open(session)
        except Exception as err:  # nothing can use the session: say why, once, and stop here
            session.close()
            self._set(LinkState.FAILED, f"cannot start {self.name} on the open session: {err}")
            _log.error("%s: cannot start on the open zenoh session: %s", self.name, err, exc_info=True)
            return
        with self._lock:
            self._session = session
        self._set(LinkState.CONNECTED)
        _log.info("%s: connected to the zenoh router", self.name)
        self._watch(session)

    def _connect(self) -> Any:
        failures = 0
        while not self._stop.is_set():
            with self._lock:
                self._attempts += 1
            try:
                session = open_session(self._config, self._overrides)
            except ConfigError as err:  # a wrong config does not heal by waiting
                self._set(LinkState.FAILED, str(err))
                _log.error("%s: not connecting, the zenoh config is wrong: %s", self.name, err)
                return None
            except TransportError as err:
                failures += 1
                delay = self._retry.delay_s(failures)
                with self._lock:
                    first, self._error = not self._error, str(err)
                if first:
                    _log.warning(
                        "%s: zenoh router unreachable (%s); retrying in the background every %.1f s at most",
                        self.name,
                        err,
                        self._retry.max_backoff_s,
                    )
                self._stop.wait(delay)
                continue
            if self._stop.is_set():
                session.close()
                return None
            return session
        return None

    def _watch(self, session: Any) -> None:
        while not self._stop.wait(self._watch_period_s):
            try:
                reached = any(True for _ in session.info.routers_zid())
            except zenoh.ZError:  # closed under us: close() is running
                return
            if reached and self._set(LinkState.CONNECTED):
                _log.info("%s: zenoh router reached again", self.name)
            elif not reached and self._set(LinkState.DISCONNECTED, "router lost; zenoh reconnects by itself"):
                _log.warning("%s: zenoh router lost; reconnecting in the background", self.name)


def encode_header(kind: str, **fields: Any) -> bytes:
    """Return a versioned JSON header: ``{"schema": 1, "kind": kind, ...fields}``."""
    return json.dumps({"schema": WIRE_SCHEMA, "kind": kind, **fields}, sort_keys=True).encode()


def decode_header(data: bytes | None, kind: str | None = None) -> dict[str, Any]:
    """Parse a header made by :func:`encode_header`, checking its schema and (optionally) kind.

    Raises:
        IntegrityError: the bytes are not a JSON object of this schema and kind.
    """
    if not data:
        raise IntegrityError(f"expected a {kind or 'JSON'} header, got nothing")
    try:
        header = json.loads(data)
    except ValueError as err:
        raise IntegrityError(f"header is not JSON: {err}") from None
    if not isinstance(header, dict) or header.get("schema") != WIRE_SCHEMA:
        schema = header.get("schema") if isinstance(header, dict) else None
        raise IntegrityError(f"header schema {schema!r}, expected {WIRE_SCHEMA}")
    if kind is not None and header.get("kind") != kind:
        raise IntegrityError(f"header kind {header.get('kind')!r}, expected {kind!r}")
    return header


class RemoteError(TransportError):
    """The other side answered with an error header (``reason``; ``retry`` says if resending may help)."""

    def __init__(self, reason: str, header: Mapping[str, Any]):
        super().__init__(reason)
        self.reason = reason
        self.header = dict(header)

    @property
    def retry(self) -> bool:
        """True when the same request may succeed later (busy server, missing upload plan)."""
        return bool(self.header.get("retry", False))


def query_once(
    session: zenoh.Session,
    key: str,
    *,
    timeout_s: float,
    payload: bytes | None = None,
    attachment: bytes | None = None,
) -> tuple[bytes, bytes | None]:
    """Send one query and return (payload, attachment) of its single reply.

    Large payloads are sent reliably with congestion control BLOCK (DROP would
    lose them without a word).

    Raises:
        TransportError: no reply within ``timeout_s`` (nobody serves ``key`` or it is down).
        RemoteError: the queryable answered with an error header.
    """
    replies = start_query(session, key, timeout_s=timeout_s, payload=payload, attachment=attachment)
    return wait_reply(replies, key)


def start_query(
    session: zenoh.Session,
    key: str,
    *,
    timeout_s: float,
    payload: bytes | None = None,
    attachment: bytes | None = None,
) -> Handler[zenoh.Reply]:
    """Send one query (reliable, CongestionControl.BLOCK) and return its reply handler at once.

    Raises:
        TransportError: the session is closed.
    """
    try:
        return session.get(
            key,
            payload=payload,
            attachment=attachment,
            timeout=timeout_s,
            congestion_control=zenoh.CongestionControl.BLOCK,
            target=zenoh.QueryTarget.BEST_MATCHING,
        )
    except zenoh.ZError as err:
        raise TransportError(f"cannot query {key}: {err}") from None


def wait_reply(replies: Handler[zenoh.Reply], key: str) -> tuple[bytes, bytes | None]:
    """Block until the first reply of a ``session.get`` handler; see :func:`query_once`."""
    for reply in replies:
        if reply.ok is not None:
            sample = reply.ok
            attachment = sample.attachment.to_bytes() if sample.attachment is not None else None
            return sample.payload.to_bytes(), attachment
        if reply.err is None:  # neither a sample nor an error: nothing to read
            continue
        err_bytes = reply.err.payload.to_bytes()
        try:
            header = decode_header(err_bytes, "error")
        except IntegrityError:
            # Not an answer of ours but Zenoh's own (a query that timed out says "Timeout"):
            # no verdict on the request, so never a refusal for good.
            detail = err_bytes.decode(errors="replace")
            raise TransportError(f"no answer on {key}: {detail}") from None
        raise RemoteError(f"{key}: {header.get('reason', 'unspecified error')}", header)
    raise TransportError(f"no reply on {key} (nobody serves it or it timed out)")


def reply_error(query: zenoh.Query, reason: str, *, retry: bool, **fields: Any) -> None:
    """Answer ``query`` with an error header the caller can act on."""
    query.reply_err(encode_header("error", reason=reason, retry=retry, **fields))


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Timeouts and retry budget of one logical network operation."""

    # Time one query may wait for its reply (s).
    timeout_s: float = setting(10.0, "time one query waits for its reply", unit="s", low=0.05, high=600.0)
    # Attempts before giving up (the first try counts).
    max_attempts: int = setting(5, "attempts before the operation fails", low=1, high=1000)
    # First back-off delay (s); doubles after each failure.
    backoff_s: float = setting(
        0.5, "first back-off delay, doubling per failure", unit="s", low=0.0, high=60.0
    )
    # Longest back-off delay (s).
    max_backoff_s: float = setting(30.0, "longest back-off delay", unit="s", low=0.0, high=3600.0)

    def __post_init__(self) -> None:
        check_ranges(self)

    def delay_s(self, failures: int) -> float:
        """Back-off before the next attempt after ``failures`` consecutive failures."""
        return min(self.max_backoff_s, self.backoff_s * 2.0 ** max(0, failures - 1))


class RateLimiter:
    """Token bucket capping a byte stream at ``rate_bytes_per_s`` (0 = no cap).

    Owned by one thread (the uploader's); not thread-safe.
    """

    def __init__(
        self,
        rate_bytes_per_s: float,
        *,
        burst_bytes: int = 1 << 20,
        clock: Callable[[], float] = time.monotonic,
    ):
        if rate_bytes_per_s < 0:
            raise ConfigError(f"rate must be >= 0 bytes/s, got {rate_bytes_per_s}")
        self._rate = float(rate_bytes_per_s)
        self._burst = float(burst_bytes)
        self._clock = clock
        self._tokens = self._burst
        self._last = clock()

    def acquire(self, size_bytes: int) -> None:
        """Sleep until ``size_bytes`` may be sent without exceeding the cap."""
        if self._rate <= 0:
            return
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        self._tokens -= size_bytes
        if self._tokens < 0:
            # Going into debt and sleeping it off keeps the long-run rate exact for chunks > burst.
            time.sleep(-self._tokens / self._rate)
