"""WS-Discovery: probe the local network for ONVIF cameras (NetworkVideoTransmitter) and read their replies.

A probe is one UDP datagram to 239.255.255.250:3702 (sent twice: UDP may lose one); devices answer to the
sender's address with a ProbeMatches message carrying each device's endpoint address, scopes (name, hardware,
location as ``onvif://www.onvif.org/<kind>/<value>`` URIs) and XAddrs (its device service URLs).

Real devices answer sloppily, and one bad datagram must never end a discovery, so ``parse_reply`` never raises:

- a ProbeMatch not wrapped in ProbeMatches (several cameras and NVRs do this) is accepted, and a log line says so;
- elements are matched by local name whatever their namespace (some use the 2009 WS-Discovery namespace);
- bytes before the XML (a BOM, garbage) and NUL padding after it are cut off, and a log line says so;
- a ProbeMatch without XAddrs cannot be reached and is dropped, with a log line;
- anything that is not XML at all is dropped with a log line naming the sender.

The parser reads untrusted input: no DTDs, no entities, no network, a size limit.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from dataclasses import dataclass, field
from urllib.parse import unquote

from consentcam.hooktypes import DiscoveredCamera
from lxml import etree

from . import const

log = logging.getLogger(__name__)

PROBE_TEMPLATE = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
    'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
    'xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery" '
    'xmlns:dn="http://www.onvif.org/ver10/network/wsdl">'
    "<s:Header>"
    '<a:Action s:mustUnderstand="1">http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</a:Action>'
    "<a:MessageID>{message_id}</a:MessageID>"
    "<a:ReplyTo><a:Address>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo>"
    '<a:To s:mustUnderstand="1">urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To>'
    "</s:Header>"
    "<s:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types></d:Probe></s:Body>"
    "</s:Envelope>"
)

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                          huge_tree=False, remove_comments=True, remove_pis=True)


def probe_message(message_id: str | None = None) -> tuple[str, bytes]:
    message_id = message_id or f"urn:uuid:{uuid.uuid4()}"
    return message_id, PROBE_TEMPLATE.format(message_id=message_id).encode()


@dataclass
class Reply:
    """What one datagram held: the cameras in it and what had to be repaired to read them."""

    cameras: list[DiscoveredCamera] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)
    relates_to: str | None = None


def parse_reply(data: bytes, sender: str = "?") -> Reply | None:
    """The cameras in one ProbeMatches datagram, or None when it is not one. Never raises."""
    try:
        return _parse(data, sender)
    except Exception as exc:  # noqa: BLE001 - a bad datagram must never end a discovery
        log.warning("discovery: dropped a reply from %s that could not be read (%s: %s)", sender,
                    type(exc).__name__, str(exc)[:200])
        return None


def _parse(data: bytes, sender: str) -> Reply | None:
    repairs: list[str] = []
    if len(data) > const.DISCOVERY_MAX_DATAGRAM:
        log.warning("discovery: dropped a %d-byte reply from %s (too large)", len(data), sender)
        return None
    start = data.find(b"<")
    if start < 0:
        log.warning("discovery: dropped a reply from %s that is not XML", sender)
        return None
    if start > 0:
        repairs.append(f"cut {start} byte(s) before the XML")
    body = data[start:]
    trimmed = body.rstrip(b"\x00 \r\n\t")
    if len(trimmed) < len(body.rstrip(b" \r\n\t")):
        repairs.append("cut NUL padding after the XML")
    try:
        root = etree.fromstring(trimmed, _PARSER)
    except etree.XMLSyntaxError as exc:
        log.warning("discovery: dropped a reply from %s that is not well-formed XML (%s)", sender, str(exc)[:200])
        return None
    if root is None:
        return None
    matches = [element for element in root.iter() if _local(element) == "ProbeMatch"]
    if not matches:
        log.info("discovery: a reply from %s holds no ProbeMatch; ignored", sender)
        return None
    reply = Reply(repairs=repairs, relates_to=_first_text(root, "RelatesTo"))
    for match in matches:
        parent = match.getparent()
        if parent is None or _local(parent) != "ProbeMatches":
            reply.repairs.append("accepted a ProbeMatch not wrapped in ProbeMatches")
        camera = _camera(match, sender)
        if camera is not None:
            reply.cameras.append(camera)
    for repair in dict.fromkeys(reply.repairs):  # once each, in order
        log.warning("discovery: repaired a malformed reply from %s: %s", sender, repair)
    return reply


def _camera(match: etree._Element, sender: str) -> DiscoveredCamera | None:
    xaddrs = tuple(_split(_first_text(match, "XAddrs")))
    address = _first_text(match, "Address") or ""
    if not xaddrs:
        log.warning("discovery: dropped a ProbeMatch from %s without XAddrs (%s): it cannot be reached", sender,
                    address or "no address")
        return None
    scopes = tuple(_split(_first_text(match, "Scopes")))
    return DiscoveredCamera(address=address or xaddrs[0], xaddrs=xaddrs, scopes=scopes, name=_scope(scopes, "name"),
                            hardware=_scope(scopes, "hardware"), location=_scope(scopes, "location"), kind="onvif")


def _local(element: etree._Element) -> str:
    tag = element.tag
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _first_text(element: etree._Element, name: str) -> str | None:
    for child in element.iter():
        if _local(child) == name:
            return (child.text or "").strip() or None
    return None


def _split(text: str | None) -> list[str]:
    return [part for part in (text or "").split() if part]


def _scope(scopes: tuple[str, ...], kind: str) -> str | None:
    """The value of ``onvif://www.onvif.org/<kind>/<value>`` (percent-decoded), if the device gave one."""
    prefix = f"onvif://www.onvif.org/{kind}/"
    for scope in scopes:
        if scope.lower().startswith(prefix):
            return unquote(scope[len(prefix):]) or None
    return None


# --- the probe ------------------------------------------------------------------------------------------


class _Collector(asyncio.DatagramProtocol):
    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.found: dict[str, DiscoveredCamera] = {}

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = parse_reply(data, f"{addr[0]}:{addr[1]}")
        if reply is None:
            return
        if reply.relates_to and reply.relates_to != self.message_id:
            log.info("discovery: a reply from %s:%d answers another probe; kept anyway", *addr)
        for camera in reply.cameras:
            self.found.setdefault(camera.address, camera)

    def error_received(self, exc: Exception) -> None:
        log.info("discovery: %s", exc)


async def discover(timeout_s: float = const.DEFAULT_DISCOVERY_TIMEOUT_S, *, interface: str = "0.0.0.0",
                   target: tuple[str, int] = (const.DISCOVERY_ADDRESS, const.DISCOVERY_PORT)) -> list[DiscoveredCamera]:
    """Probe for ONVIF cameras and collect replies for ``timeout_s``. ``interface``: the local address to send from."""
    message_id, message = probe_message()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)  # the local network only
        if interface != "0.0.0.0":
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
        sock.bind((interface, 0))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    loop = asyncio.get_running_loop()
    transport, collector = await loop.create_datagram_endpoint(lambda: _Collector(message_id), sock=sock)
    try:
        for _ in range(2):
            transport.sendto(message, target)
            await asyncio.sleep(min(0.1, timeout_s / 10))
        await asyncio.sleep(max(0.0, timeout_s - 0.2))
    finally:
        transport.close()
    found = sorted(collector.found.values(), key=lambda camera: camera.address)
    log.info("discovery: %d camera(s) answered within %.1f s", len(found), timeout_s)
    return found
