"""Fixtures of the policy tests; the helpers live in policy_fixtures.py."""

from __future__ import annotations

import pytest
from policy_fixtures import small_config

from sop_ros.core.policy import Pi0Policy


@pytest.fixture
def policy() -> Pi0Policy:
    return Pi0Policy(small_config())
