"""Confidence intervals for success rates and for changes in them.

A success rate measured on n episodes is a binomial proportion; its 95 %
interval is Wilson's score interval, which stays inside [0, 1] and keeps its
coverage for small n and rates near 0 or 1 (where p ± 1.96·√(p(1−p)/n) does
neither). A change between two rates, or the mean change over several tasks,
gets the MOVER interval built from the Wilson intervals of its parts (Newcombe's
method 10 for one difference; Zou & Donner's generalisation for a mean): exact
in the same cases Wilson's is, and never narrower than the evidence allows.

Pure functions; no state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Z95", "Change", "Rate", "combined", "mean_change", "mean_rate", "wilson"]

# Two-sided 95 % normal quantile.
Z95 = 1.959963984540054


def wilson(successes: int, episodes: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (low, high) of ``successes`` out of ``episodes``; (0, 1) for none."""
    if episodes <= 0:
        return (0.0, 1.0)
    if not 0 <= successes <= episodes:
        raise ValueError(f"successes ({successes}) must lie between 0 and episodes ({episodes})")
    p = successes / episodes
    z2 = z * z
    centre = (p + z2 / (2 * episodes)) / (1 + z2 / episodes)
    half = z / (1 + z2 / episodes) * math.sqrt(p * (1 - p) / episodes + z2 / (4 * episodes * episodes))
    # Rounding can put a bound a hair past p when p is 0 or 1; the interval always holds p.
    return (max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half)))


@dataclass(frozen=True)
class Rate:
    """A success rate with its 95 % interval."""

    successes: int
    episodes: int

    @property
    def value(self) -> float:
        """Successes over episodes (0 when there were none)."""
        return self.successes / self.episodes if self.episodes else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        """Wilson 95 % interval."""
        return wilson(self.successes, self.episodes)

    @property
    def half_width(self) -> float:
        """Half the interval's width: the ± to quote."""
        low, high = self.interval
        return (high - low) / 2

    def text(self) -> str:
        """``"45% [36–55]"``: the rate and its interval, in percent."""
        low, high = self.interval
        return f"{self.value:.0%} [{low * 100:.0f}–{high * 100:.0f}]"

    def to_json(self) -> dict[str, float | int | list[float]]:
        """Plain JSON form."""
        low, high = self.interval
        return {
            "successes": self.successes,
            "episodes": self.episodes,
            "rate": self.value,
            "ci95": [round(low, 4), round(high, 4)],
        }


@dataclass(frozen=True)
class Change:
    """A combination of rates (a change after − before, a mean) with its 95 % interval."""

    value: float
    low: float
    high: float

    @property
    def verdict(self) -> str:
        """Up, down, or within noise (the interval holds 0)."""
        if self.low > 0.0:
            return "up"
        if self.high < 0.0:
            return "down"
        return "within noise"

    def text(self) -> str:
        """``"+12 [+3, +21] pts"``: a change in points."""
        return f"{self.value * 100:+.0f} [{self.low * 100:+.0f}, {self.high * 100:+.0f}] pts"

    def level_text(self) -> str:
        """``"45% [38–52]"``: a level (e.g. a mean rate) in percent."""
        return f"{self.value:.0%} [{max(0.0, self.low) * 100:.0f}–{min(1.0, self.high) * 100:.0f}]"

    def to_json(self) -> dict[str, float | str | list[float]]:
        """Plain JSON form."""
        return {
            "change": round(self.value, 4),
            "ci95": [round(self.low, 4), round(self.high, 4)],
            "verdict": self.verdict,
        }


def combined(terms: Sequence[tuple[float, Rate]]) -> Change:
    """Σ coefficient·rate over ``terms``, with its MOVER 95 % interval (Zou & Donner).

    Each rate moves within its own Wilson interval: downward where its coefficient is
    positive, upward where negative, for the lower bound, and the other way round for the upper.
    """
    value = lower = upper = 0.0
    for coefficient, rate in terms:
        low, high = rate.interval
        down, up = (rate.value - low, high - rate.value)
        if coefficient < 0:
            down, up = up, down
        value += coefficient * rate.value
        lower += (coefficient * down) ** 2
        upper += (coefficient * up) ** 2
    return Change(value=value, low=value - math.sqrt(lower), high=value + math.sqrt(upper))


def mean_rate(rates: Sequence[Rate]) -> Change:
    """Mean of ``rates`` (e.g. over tasks) with its 95 % interval."""
    if not rates:
        raise ValueError("mean_rate needs at least one rate")
    return combined([(1.0 / len(rates), rate) for rate in rates])


def mean_change(pairs: Sequence[tuple[Rate, Rate]]) -> Change:
    """Mean over ``pairs`` of (after − before), with its 95 % interval.

    One pair gives Newcombe's interval for a difference of two proportions.
    """
    if not pairs:
        raise ValueError("mean_change needs at least one (before, after) pair")
    w = 1.0 / len(pairs)
    return combined([term for before, after in pairs for term in ((-w, before), (w, after))])
