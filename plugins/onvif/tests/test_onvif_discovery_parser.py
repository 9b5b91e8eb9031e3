"""The WS-Discovery reply parser against the datagrams real devices send: well-formed, sloppy and broken. It must
read what can be read, say in a log line what it repaired, and never raise."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from consentcam_onvif import discovery
from consentcam_onvif.discovery import parse_reply, probe_message

HEAD = ('<?xml version="1.0" encoding="UTF-8"?><SOAP-ENV:Envelope xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope" '
        'xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery">'
        '<SOAP-ENV:Header><wsa:RelatesTo>urn:uuid:probe-1</wsa:RelatesTo></SOAP-ENV:Header><SOAP-ENV:Body>')
TAIL = "</SOAP-ENV:Body></SOAP-ENV:Envelope>"
SCOPES = ("onvif://www.onvif.org/type/video_encoder onvif://www.onvif.org/name/Front%20Door "
          "onvif://www.onvif.org/hardware/IPC-1 onvif://www.onvif.org/location/city/Chicago")


def match(address: str = "urn:uuid:cam-1", xaddrs: str = "http://192.0.2.10/onvif/device_service",
          scopes: str = SCOPES) -> str:
    return (f"<d:ProbeMatch><wsa:EndpointReference><wsa:Address>{address}</wsa:Address></wsa:EndpointReference>"
            f"<d:Types>dn:NetworkVideoTransmitter</d:Types><d:Scopes>{scopes}</d:Scopes>"
            f"<d:XAddrs>{xaddrs}</d:XAddrs><d:MetadataVersion>1</d:MetadataVersion></d:ProbeMatch>")


def test_a_well_formed_reply(caplog):
    caplog.set_level(logging.INFO)
    reply = parse_reply((HEAD + f"<d:ProbeMatches>{match()}</d:ProbeMatches>" + TAIL).encode(), "192.0.2.10:3702")
    assert reply is not None and reply.repairs == [] and reply.relates_to == "urn:uuid:probe-1"
    (camera,) = reply.cameras
    assert camera.address == "urn:uuid:cam-1" and camera.xaddrs == ("http://192.0.2.10/onvif/device_service",)
    assert (camera.name, camera.hardware, camera.location) == ("Front Door", "IPC-1", "city/Chicago")
    assert camera.kind == "onvif" and len(camera.scopes) == 4
    assert "repaired" not in caplog.text


def test_a_probe_match_not_wrapped_in_probe_matches_is_read_and_the_repair_logged(caplog):
    caplog.set_level(logging.INFO)
    reply = parse_reply((HEAD + match() + TAIL).encode(), "192.0.2.10:3702")
    assert reply is not None and [c.address for c in reply.cameras] == ["urn:uuid:cam-1"]
    assert reply.repairs == ["accepted a ProbeMatch not wrapped in ProbeMatches"]
    assert "repaired a malformed reply from 192.0.2.10:3702: accepted a ProbeMatch not wrapped in ProbeMatches" in caplog.text


def test_several_matches_in_one_reply_and_other_namespaces():
    other = match("urn:uuid:cam-2", "http://192.0.2.11/onvif/device_service http://[2001:db8::11]/onvif/device_service")
    body = (f"<d:ProbeMatches>{match()}{other}</d:ProbeMatches>"
            '<x:ProbeMatches xmlns:x="http://docs.oasis-open.org/ws-dd/ns/discovery/2009/01">'
            f'{match("urn:uuid:cam-3").replace("<d:", "<x:").replace("</d:", "</x:")}</x:ProbeMatches>')
    reply = parse_reply((HEAD + body + TAIL).encode())
    assert [c.address for c in reply.cameras] == ["urn:uuid:cam-1", "urn:uuid:cam-2", "urn:uuid:cam-3"]
    assert len(reply.cameras[1].xaddrs) == 2


def test_garbage_before_and_nul_padding_after_are_cut_and_said(caplog):
    caplog.set_level(logging.INFO)
    data = b"\xef\xbb\xbfjunk" + (HEAD + f"<d:ProbeMatches>{match()}</d:ProbeMatches>" + TAIL).encode() + b"\x00" * 16
    reply = parse_reply(data, "192.0.2.12:3702")
    assert reply is not None and len(reply.cameras) == 1
    assert reply.repairs == ["cut 7 byte(s) before the XML", "cut NUL padding after the XML"]
    assert "cut 7 byte(s) before the XML" in caplog.text


def test_a_match_without_xaddrs_is_dropped_with_a_reason(caplog):
    caplog.set_level(logging.INFO)
    reply = parse_reply((HEAD + f"<d:ProbeMatches>{match(xaddrs='')}{match('urn:uuid:ok')}</d:ProbeMatches>"
                         + TAIL).encode(), "192.0.2.13:3702")
    assert [c.address for c in reply.cameras] == ["urn:uuid:ok"]
    assert "without XAddrs (urn:uuid:cam-1)" in caplog.text


def test_a_match_without_scopes_or_address_still_counts():
    bare = "<d:ProbeMatch><d:XAddrs>http://192.0.2.14/onvif/device_service</d:XAddrs></d:ProbeMatch>"
    (camera,) = parse_reply((HEAD + bare + TAIL).encode()).cameras
    assert camera.address == "http://192.0.2.14/onvif/device_service" and camera.scopes == () and camera.name is None


@pytest.mark.parametrize("data", [
    b"",
    b"\x00\x01\x02 not xml at all",
    b"<unclosed><ProbeMatch>",
    (HEAD + "<d:ProbeMatches>" + match()).encode(),  # cut off in the middle
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><x>&b;</x>',
    (HEAD + "<d:Hello/>" + TAIL).encode(),  # a Hello, not an answer
    b"<" + b"a" * 70_000 + b"/>",
    "<x>\udcff</x>".encode("utf-8", "surrogateescape"),
    (HEAD + match().replace("<d:XAddrs>", "<d:XAddrs>\x01") + TAIL).encode(),
])
def test_a_bad_datagram_never_raises(data, caplog):
    caplog.set_level(logging.INFO)
    reply = parse_reply(data, "192.0.2.99:3702")
    assert reply is None or reply.cameras == []
    assert "/etc/passwd" not in caplog.text and "root:" not in caplog.text


def test_the_probe_asks_for_network_video_transmitters():
    message_id, message = probe_message("urn:uuid:fixed")
    assert b"dn:NetworkVideoTransmitter" in message and b"<a:MessageID>urn:uuid:fixed</a:MessageID>" in message
    assert b"/discovery/Probe</a:Action>" in message


async def test_discover_survives_bad_datagrams_among_good_ones():
    """A fake device on 127.0.0.1 answers each probe with garbage, a wrapped match and an unwrapped one."""
    answers = [b"\xff\xfe garbage", (HEAD + f"<d:ProbeMatches>{match()}</d:ProbeMatches>" + TAIL).encode(),
               (HEAD + match("urn:uuid:cam-2") + TAIL).encode()]

    class Device(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            assert b"NetworkVideoTransmitter" in data
            for answer in answers:
                self.transport.sendto(answer, addr)

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Device, local_addr=("127.0.0.1", 0), family=socket.AF_INET)
    try:
        port = transport.get_extra_info("sockname")[1]
        found = await discovery.discover(0.6, interface="127.0.0.1", target=("127.0.0.1", port))
    finally:
        transport.close()
    assert [c.address for c in found] == ["urn:uuid:cam-1", "urn:uuid:cam-2"]  # the probe is sent twice: no duplicates


def test_the_discover_command_prints_what_answered(monkeypatch):
    """``consentcam discover`` through the plugin host, text and JSON, with a fake device on 127.0.0.1 answering
    the way ipycam does (an unwrapped ProbeMatch). The multicast path is tested in test_onvif_discovery_netns.py."""
    import functools
    import json
    import threading

    from click.testing import CliRunner
    from consentcam.cli import main

    device = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    device.bind(("127.0.0.1", 0))
    device.settimeout(0.2)
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            try:
                _, addr = device.recvfrom(65535)
            except TimeoutError:
                continue
            device.sendto((HEAD + match("urn:uuid:lobby", "http://192.0.2.20:8080/onvif/device_service") + TAIL).encode(),
                          addr)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    monkeypatch.setattr(discovery, "discover", functools.partial(discovery.discover, target=device.getsockname()))
    try:
        runner = CliRunner()
        text = runner.invoke(main, ["discover", "--timeout", "0.5"])
        as_json = runner.invoke(main, ["discover", "--timeout", "0.5", "--json"])
    finally:
        stop.set()
        thread.join()
        device.close()
    assert text.exit_code == 0, text.output
    assert "urn:uuid:lobby  Front Door  [onvif]  http://192.0.2.20:8080/onvif/device_service" in text.output
    assert "hardware: IPC-1  location: city/Chicago" in text.output
    assert as_json.exit_code == 0, as_json.output
    (camera,) = [c for c in json.loads(as_json.output)["cameras"] if c["kind"] == "onvif"]
    assert camera["xaddrs"] == ["http://192.0.2.20:8080/onvif/device_service"] and camera["name"] == "Front Door"
