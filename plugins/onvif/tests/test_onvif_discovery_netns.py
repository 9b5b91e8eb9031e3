"""``consentcam discover`` finds ipycam over real multicast.

Loopback carries no multicast in the default network namespace, so the test builds a small network of its own:
two namespaces joined by a veth pair with addresses from 198.18.0.0/24 (the benchmarking range, never routed),
multicast routed onto the veth on both sides, ipycam in one and the CLI in the other. Everything is removed
afterwards. Creating namespaces needs root (``.ci/run`` runs as root); only where that is impossible is the test
skipped, and the reason says so.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from consentcam.testing.rtsp_peer import PeerUnavailable
from onvif_testkit import IpyCam

pytestmark = pytest.mark.peer("ipycam")

CAMERA_IP, PROBE_IP = "198.18.0.1", "198.18.0.2"
CONSENTCAM = Path(sys.executable).with_name("consentcam")


@dataclass(frozen=True)
class Network:
    camera_ns: str
    probe_ns: str

    def run_in(self, namespace: str) -> tuple[str, ...]:
        return ("ip", "netns", "exec", namespace)


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)


@pytest.fixture
def network() -> Iterator[Network]:
    if shutil.which("ip") is None:
        pytest.fail("the ip command is missing (Debian package iproute2; .ci/run installs it)", pytrace=False)
    if os.geteuid() != 0:
        pytest.skip("creating network namespaces needs root; .ci/run runs as root")
    tag = secrets.token_hex(3)
    net = Network(f"cc-onvif-cam-{tag}", f"cc-onvif-probe-{tag}")
    cam_if, probe_if = f"vcc{tag}", f"vcp{tag}"  # interface names: 15 characters at most
    created: list[str] = []
    try:
        for namespace in (net.camera_ns, net.probe_ns):
            made = _ip("netns", "add", namespace)
            if made.returncode != 0:
                if "Operation not permitted" in made.stderr:
                    pytest.skip(f"this machine does not let us create a network namespace: {made.stderr.strip()}")
                pytest.fail(f"ip netns add {namespace}: {made.stderr.strip()}", pytrace=False)
            created.append(namespace)
        steps = [
            ("link", "add", cam_if, "type", "veth", "peer", "name", probe_if),
            ("link", "set", cam_if, "netns", net.camera_ns),
            ("link", "set", probe_if, "netns", net.probe_ns),
            ("-n", net.camera_ns, "addr", "add", f"{CAMERA_IP}/24", "dev", cam_if),
            ("-n", net.probe_ns, "addr", "add", f"{PROBE_IP}/24", "dev", probe_if),
            *((("-n", ns, "link", "set", name, "up")) for ns, name in
              ((net.camera_ns, "lo"), (net.camera_ns, cam_if), (net.probe_ns, "lo"), (net.probe_ns, probe_if))),
            ("-n", net.camera_ns, "route", "add", "224.0.0.0/4", "dev", cam_if),
            ("-n", net.probe_ns, "route", "add", "224.0.0.0/4", "dev", probe_if),
        ]
        for step in steps:
            done = _ip(*step)
            if done.returncode != 0:
                pytest.fail(f"ip {' '.join(step)}: {done.stderr.strip()}", pytrace=False)
        yield net
    finally:
        for namespace in created:  # deleting a namespace deletes its end of the veth pair, and so the pair
            _ip("netns", "del", namespace)
        leftovers = _ip("netns", "list").stdout
        assert net.camera_ns not in leftovers and net.probe_ns not in leftovers


def test_consentcam_discover_finds_ipycam_in_a_network_namespace(network, tmp_path):
    camera = IpyCam(tmp_path, local_ip=CAMERA_IP, name="Lobby%20Camera", argv_prefix=network.run_in(network.camera_ns))
    try:
        camera.start()
    except PeerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        env = {**os.environ, "CONSENTCAM_DATA_DIR": str(tmp_path / "data")}
        done = subprocess.run([*network.run_in(network.probe_ns), str(CONSENTCAM), "discover", "--json", "--timeout", "2"],
                              capture_output=True, text=True, timeout=60, env=env)
    finally:
        camera.stop()
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)["cameras"]
    onvif = [c for c in found if c["kind"] == "onvif"]
    assert len(onvif) == 1, (found, camera.log_text()[-2000:])
    (match,) = onvif
    assert match["xaddrs"] == [f"http://{CAMERA_IP}:{camera.ports['onvif_port']}/onvif/device_service"]
    assert match["name"] == "Lobby Camera" and match["address"].startswith("urn:uuid:")
    assert "onvif://www.onvif.org/Profile/Streaming" in match["scopes"]
    # ipycam answers with a ProbeMatch not wrapped in ProbeMatches, like many real devices: read, and said so.
    assert "accepted a ProbeMatch not wrapped in ProbeMatches" in done.stderr
