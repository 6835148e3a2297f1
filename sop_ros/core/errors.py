"""The sop_ros exception hierarchy. Every failure the package raises is a SopError."""

from __future__ import annotations

__all__ = [
    "BagError",
    "ConfigError",
    "IncompatibleWeightsError",
    "InputError",
    "IntegrityError",
    "SopError",
    "TransportError",
    "UnsafeInputError",
    "WeightsError",
]


class SopError(Exception):
    """Root of all sop_ros errors."""


class ConfigError(SopError, ValueError):
    """A configuration value breaks a stated precondition."""


class BagError(SopError):
    """An episode bag cannot be written, read or recovered."""


class IntegrityError(SopError):
    """Data does not match its declared digest, size or schema."""


class TransportError(SopError):
    """A network exchange failed after its retry budget was spent."""


class WeightsError(SopError):
    """Weights cannot be published, fetched, staged or activated."""


class IncompatibleWeightsError(WeightsError):
    """Weights do not fit the running policy (names, shapes, dtypes or base model)."""


class InputError(SopError, ValueError):
    """Runtime input (a message, a service request, a bag's metadata, an upload) is malformed or does not fit.

    Not a :class:`ConfigError`: the settings are fine, one piece of input is not; it is
    refused and what was already stored is kept.
    """


class UnsafeInputError(InputError):
    """Input the robot must not act on: not finite, malformed, mislabelled or stale."""
