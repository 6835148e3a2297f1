"""TLS + per-robot credentials + access control on a loopback router (certificates made at test time)."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from transport_helpers import CONFIG_DIR, free_port, validate_bag, write_bag

from sop_ros.core.errors import TransportError
from sop_ros.transport.ingest import IngestConfig, IngestServer
from sop_ros.transport.security import client_overrides, fleet_access_control, router_overrides
from sop_ros.transport.session import RetryPolicy, open_session
from sop_ros.transport.upload import BagUploader, UploadConfig

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command"),
]


def make_pki(out: Path) -> dict[str, Path]:
    """A throw-away CA and a router certificate for localhost (never committed)."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=out, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=sop-test-ca")
    run("req", *ec, "-keyout", "router.key", "-out", "router.csr", "-subj", "/CN=localhost")
    (out / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run(
        "x509",
        "-req",
        "-in",
        "router.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "router.pem",
        "-days",
        "1",
        "-extfile",
        "san.cnf",
    )
    return {"ca": out / "ca.pem", "cert": out / "router.pem", "key": out / "router.key"}


@pytest.fixture
def secure_fleet(tmp_path):
    pki = make_pki(tmp_path)
    users = {"learner": "learner-pw", "robot-a": "a-pw", "robot-b": "b-pw"}
    credentials = tmp_path / "credentials.txt"
    credentials.write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
    acl = fleet_access_control("t", learners=["learner"], robots={"robot-a": "ra", "robot-b": "rb"})
    endpoint = f"tls/localhost:{free_port()}"
    router = open_session(
        CONFIG_DIR / "test_router.json5",
        router_overrides(
            endpoint=endpoint,
            certificate=pki["cert"],
            private_key=pki["key"],
            credentials_file=credentials,
            access_control=acl,
        ),
    )
    sessions = []

    def client(user: str | None, password: str = ""):
        overrides = {"connect/endpoints": [endpoint], "connect/timeout_ms": 1500}
        if user is not None:
            overrides.update(
                client_overrides(endpoint=endpoint, ca_certificate=pki["ca"], user=user, password=password)
            )
            overrides["connect/timeout_ms"] = 1500
        session = open_session(CONFIG_DIR / "test_client.json5", overrides)
        sessions.append(session)
        return session

    yield client, users
    for session in sessions:
        session.close()
    router.close()


def test_clients_without_valid_credentials_cannot_connect(secure_fleet):
    client, users = secure_fleet
    with pytest.raises(TransportError):
        client("robot-a", "wrong")
    with pytest.raises(TransportError):
        client(None)  # no TLS, no credential
    assert client("robot-a", users["robot-a"]) is not None


def test_robot_uploads_only_its_own_keys_and_cannot_publish_weights(secure_fleet, tmp_path):
    client, users = secure_fleet
    learner = client("learner", users["learner"])
    server = IngestServer(
        learner, tmp_path / "store", validate_bag=validate_bag, config=IngestConfig(fleet="t")
    )
    heard: list[bytes] = []
    got_any = threading.Event()

    def on_weights(sample) -> None:
        heard.append(sample.payload.to_bytes())
        got_any.set()

    watcher = client("robot-b", users["robot-b"])
    watcher.declare_subscriber("sop/t/weights/**", on_weights)
    robot = client("robot-a", users["robot-a"])
    threading.Event().wait(0.5)

    bag, meta = write_bag(tmp_path, "ra", messages=3)
    retry = RetryPolicy(timeout_s=1.0, max_attempts=1)
    result = BagUploader(robot, UploadConfig(fleet="t", robot_id="ra", retry=retry)).upload(bag)
    assert result.state == "stored"

    # robot-a posing as robot-b: the router never lets the query through.
    impostor = BagUploader(robot, UploadConfig(fleet="t", robot_id="rb", retry=retry))
    with pytest.raises(TransportError, match="no reply"):
        impostor.upload(bag, episode_id=meta.episode_id)

    robot.put("sop/t/weights/push", b"forged weights")
    learner.put("sop/t/weights/push", b"real weights")
    assert got_any.wait(5)
    threading.Event().wait(0.3)
    assert heard == [b"real weights"]
    server.close()
