"""The email channel's pooled SMTP connections, against a real SMTP server on loopback: reused across messages,
replaced when the server dropped them, kept after a refusal, and bounded in number."""

from __future__ import annotations

import asyncio

from consentcam.channels import EmailChannel
from consentcam.hooktypes import OwnerNotification
from consentcam.settings import Settings
from consentcam.testing.smtp import SmtpServer


def _settings(box, tmp_path, **extra) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, secret_key="email-channel-test", smtp_host=box.host,  # type: ignore[call-arg]
                    smtp_port=box.port, load_entry_point_plugins=False, **extra)


def _note(i: int) -> OwnerNotification:
    return OwnerNotification(owner_id=f"o{i}", email=f"owner{i}@home.example.org", name=f"Owner {i}", phone=None,
                             channels={"email": True}, subject=f"case {i}", text=f"hello {i}", kind="request", data={},
                             idempotency_key=f"notify.request:r:{i}")


async def test_connections_are_reused_and_bounded(tmp_path):
    with SmtpServer() as box:
        channel = EmailChannel(_settings(box, tmp_path, smtp_connections=3))
        results = await asyncio.gather(*(channel.consentcam_notify_owner(_note(i)) for i in range(40)))
        await channel.aclose()
    assert all(r is not None and r.delivered for r in results)
    assert sorted(m["To"] for m in box.messages) == sorted(f"owner{i}@home.example.org" for i in range(40))
    assert 1 <= len(set(box.peers)) <= 3, f"{len(set(box.peers))} connections for 40 messages, at most 3 allowed"


async def test_a_connection_the_server_dropped_is_replaced_and_the_message_sent(tmp_path):
    first = SmtpServer()
    with first as box:
        channel = EmailChannel(_settings(box, tmp_path, smtp_connections=1))
        assert (await channel.consentcam_notify_owner(_note(1))).delivered
    # The server restarts on the same port: the pooled connection is dead, and the next message must still go.
    with SmtpServer(port=box.port) as again:
        result = await channel.consentcam_notify_owner(_note(2))
        assert result is not None and result.delivered, result
        assert [m["To"] for m in again.messages] == ["owner2@home.example.org"]
        await channel.aclose()


async def test_a_refusal_is_a_retryable_result_and_the_connection_is_kept(tmp_path):
    with SmtpServer() as box:
        channel = EmailChannel(_settings(box, tmp_path, smtp_connections=1))
        box.refuse = True
        refused = await channel.consentcam_notify_owner(_note(1))
        assert refused is not None and not refused.delivered and refused.retryable, refused
        box.refuse = False
        delivered = await channel.consentcam_notify_owner(_note(2))
        await channel.aclose()
    assert delivered is not None and delivered.delivered
    assert [m["To"] for m in box.messages] == ["owner2@home.example.org"]
    assert len(set(box.peers)) == 1, "the refusal reset the envelope; the same connection carries the next message"


async def test_no_server_is_a_retryable_result(tmp_path):
    with SmtpServer() as box:
        settings = _settings(box, tmp_path)
    channel = EmailChannel(settings)  # the server is gone: nothing listens on its port
    result = await channel.consentcam_notify_owner(_note(1))
    assert result is not None and not result.delivered and result.retryable, result
