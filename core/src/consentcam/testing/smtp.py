"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives, for notification tests."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Mailbox:
    host: str
    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    refuse: bool = False  # answer 451 (try again later) to every message
    peers: list[tuple[str, int]] = field(default_factory=list)  # the client's address of each message: its connection

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if address in m["To"]]

    def body(self, message: EmailMessage) -> str:
        part = message.get_body(("plain",))
        return part.get_content() if part is not None else ""


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        with self.box.lock:
            self.box.peers.append(tuple(session.peer[:2]))  # type: ignore[arg-type]
        if self.box.refuse:
            return "451 4.3.0 try again later"
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.box.lock:
            self.box.messages.append(message)  # type: ignore[arg-type]
        return "250 OK"


class SmtpServer:
    def __init__(self, port: int | None = None) -> None:
        from aiosmtpd.controller import Controller

        self.box = Mailbox("127.0.0.1", port or free_port())
        self.controller = Controller(_Handler(self.box), hostname="127.0.0.1", port=self.box.port)

    def __enter__(self) -> Mailbox:
        self.controller.start()
        return self.box

    def __exit__(self, *exc: Any) -> None:
        self.controller.stop()
