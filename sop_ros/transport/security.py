"""TLS, per-robot credentials and access control for the fleet router.

The router listens on ``tls/...`` only, checks every client's user/password
against a credentials file (``user:password`` per line, kept out of version
control), and applies an access-control list that denies by default:

- the learner's users may do anything under ``sop/<fleet>/**``;
- each robot may query (and get replies) only under its own
  ``sop/<fleet>/upload/<robot_id>/**``;
- robots may subscribe to and query ``sop/<fleet>/weights/**`` and receive
  its samples and replies, but never put there nor serve a queryable there:
  only the learner publishes weights.

Functions here only build config dictionaries for :func:`open_session`; they
hold no state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sop_ros.core.errors import ConfigError
from sop_ros.transport.session import fleet_key

__all__ = ["client_overrides", "fleet_access_control", "router_overrides"]

_ALL_MESSAGES = [
    "put",
    "delete",
    "declare_subscriber",
    "query",
    "declare_queryable",
    "reply",
    "liveliness_token",
    "declare_liveliness_subscriber",
    "liveliness_query",
]


def fleet_access_control(fleet: str, *, learners: Sequence[str], robots: Mapping[str, str]) -> dict[str, Any]:
    """Return the router's ``access_control`` section for one fleet.

    Args:
        fleet: Fleet name (the ``sop/<fleet>`` key space).
        learners: Usernames of learner processes (full access to the fleet's keys).
        robots: Username -> robot id, one entry per robot credential.
    """
    if not learners:
        raise ConfigError("at least one learner username is needed, or nothing could publish weights")
    weights = fleet_key(fleet, "weights") + "/**"
    rules: list[dict[str, Any]] = [
        {
            "id": "learner",
            "permission": "allow",
            "messages": _ALL_MESSAGES,
            "flows": ["ingress", "egress"],
            "key_exprs": [fleet_key(fleet) + "/**"],
        },
        # Router's view: what a robot sends in (subscribe, query) ...
        {
            "id": "weights-in",
            "permission": "allow",
            "messages": ["declare_subscriber", "query"],
            "flows": ["ingress"],
            "key_exprs": [weights],
        },
        # ... and what the router forwards to it (samples, replies, the learner's declarations).
        {
            "id": "weights-out",
            "permission": "allow",
            "messages": ["put", "reply", "declare_queryable", "declare_subscriber"],
            "flows": ["egress"],
            "key_exprs": [weights],
        },
    ]
    subjects: list[dict[str, Any]] = [{"id": "learners", "usernames": list(learners)}]
    policies: list[dict[str, Any]] = [{"id": "learners", "rules": ["learner"], "subjects": ["learners"]}]
    for user, robot_id in sorted(robots.items()):
        rule_id = f"upload-{robot_id}"
        if not any(r["id"] == rule_id for r in rules):
            rules.append(
                {
                    "id": rule_id,
                    "permission": "allow",
                    "messages": ["query", "reply"],
                    "flows": ["ingress", "egress"],
                    "key_exprs": [fleet_key(fleet, "upload", robot_id) + "/**"],
                }
            )
        subjects.append({"id": f"user-{user}", "usernames": [user]})
        policies.append(
            {
                "id": f"robot-{user}",
                "rules": [rule_id, "weights-in", "weights-out"],
                "subjects": [f"user-{user}"],
            }
        )
    return {
        "enabled": True,
        "default_permission": "deny",
        "rules": rules,
        "subjects": subjects,
        "policies": policies,
    }


def router_overrides(
    *,
    endpoint: str,
    certificate: Path,
    private_key: Path,
    credentials_file: Path,
    access_control: Mapping[str, Any],
) -> dict[str, Any]:
    """Overrides that make a router config listen on TLS only, with credentials and access control.

    Args:
        endpoint: e.g. ``tls/0.0.0.0:7447`` (the certificate must name the address robots dial).
        certificate: The router's PEM certificate (chain).
        private_key: Its PEM private key.
        credentials_file: ``user:password`` lines, one per robot and learner.
        access_control: From :func:`fleet_access_control`.
    """
    if not endpoint.startswith("tls/"):
        raise ConfigError(f"secure router endpoint must be tls/..., got {endpoint!r}")
    return {
        "listen/endpoints": [endpoint],
        "transport/link/tls/listen_certificate": str(certificate),
        "transport/link/tls/listen_private_key": str(private_key),
        "transport/auth/usrpwd/dictionary_file": str(credentials_file),
        "access_control": dict(access_control),
    }


def client_overrides(*, endpoint: str, ca_certificate: Path, user: str, password: str) -> dict[str, Any]:
    """Overrides that make a client (robot or learner) dial the router over TLS with its credential."""
    if not endpoint.startswith("tls/"):
        raise ConfigError(f"secure endpoint must be tls/..., got {endpoint!r}")
    return {
        "connect/endpoints": [endpoint],
        "transport/link/tls/root_ca_certificate": str(ca_certificate),
        "transport/auth/usrpwd/user": user,
        "transport/auth/usrpwd/password": password,
    }
