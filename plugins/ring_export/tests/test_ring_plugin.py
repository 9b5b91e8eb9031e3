"""The plugin's hooks against the Ring fake, with a collecting sink in place of the vault: linking with a
two-factor code, paging history back to the window, downloading exactly the events that start inside it, saying
what nothing covers, and the refresh token rotated and saved on the way. Never a secret in a log."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from consentcam import CredentialsRejected
from consentcam.hooktypes import AccountCredentials, CameraConnection, CameraRef, LinkedAccount, TimeWindow
from consentcam_ring_export.plugin import RingExportPlugin
from ring_testkit import (
    BASE,
    CAM_ID,
    CODE,
    DOORBELL_ID,
    EMAIL,
    FAILING_ID,
    LIBRARY_WARNINGS,
    NO_PLAN_ID,
    PASSWORD,
    CollectingSink,
    event_id,
    sha256,
)

pytestmark = LIBRARY_WARNINGS


def at(minutes: float) -> object:
    return BASE + timedelta(minutes=minutes)


class Saved:
    """The core's side of ``LinkedAccount.save``: what was kept, in order."""

    def __init__(self) -> None:
        self.secrets: list[dict] = []

    async def __call__(self, secret: dict) -> None:
        self.secrets.append(dict(secret))


async def linked(plugin: RingExportPlugin) -> dict:
    first = await plugin.consentcam_link_account(AccountCredentials("ring", EMAIL, PASSWORD))
    assert first.code_required and not first.linked and not first.secret
    done = await plugin.consentcam_link_account(AccountCredentials("ring", EMAIL, PASSWORD, CODE))
    assert done.linked
    return done.secret


def camera(device_id: object, secret: dict | None, saved: Saved | None = None) -> CameraRef:
    account = LinkedAccount("ring", dict(secret), saved) if secret is not None else None
    return CameraRef("cam-1", "Front door", CameraConnection("ring", {"device_id": device_id}), account=account)


@pytest.fixture
def plugin(ring_fake, tmp_path):
    return RingExportPlugin(session_factory=ring_fake.client_session, work_dir=tmp_path, page_size=2)


async def test_linking_keeps_only_a_refresh_token_and_lists_the_cameras(plugin, ring_fake):
    assert await plugin.consentcam_link_account(AccountCredentials("nest", EMAIL, PASSWORD)) is None
    secret = await linked(plugin)
    assert set(secret) == {"refresh_token", "hardware_id"}
    assert secret["refresh_token"] == ring_fake.issued_refresh_tokens[-1]
    assert ring_fake.session_hardware_ids == [secret["hardware_id"]]
    done = await plugin.consentcam_link_account(AccountCredentials("ring", EMAIL, PASSWORD, CODE))
    assert {d["device_id"]: d["recordings"] for d in done.devices} == {str(DOORBELL_ID): True, str(NO_PLAN_ID): False,
                                                                        str(CAM_ID): True, str(FAILING_ID): True}
    with pytest.raises(CredentialsRejected, match="email or password"):
        await plugin.consentcam_link_account(AccountCredentials("ring", EMAIL, "not it"))
    with pytest.raises(CredentialsRejected, match="verification code"):
        await plugin.consentcam_link_account(AccountCredentials("ring", EMAIL, PASSWORD, "999999"))


async def test_a_window_covering_two_of_five_events_yields_exactly_those_two(plugin, ring_fake, ring_media, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    secret, saved = await linked(plugin), Saved()
    sink = CollectingSink(tmp_path)
    window = TimeWindow(at(9), at(20))
    result = await plugin.consentcam_fetch_recording(camera(DOORBELL_ID, secret, saved), window, sink)
    fetched = [p["ring_event"]["event_id"] for _, p in sink.received]
    assert fetched == [str(event_id(1)), str(event_id(2))]
    assert [sha256(path) for path, _ in sink.received] == [sha256(ring_media[event_id(1)]), sha256(ring_media[event_id(2)])]
    assert len(result.clips) == 2 and not any(p.exists() for p in result.clips)  # handed over, then removed
    first, second = (p for _, p in sink.received)
    assert first["ring_event"]["created_at"] == at(10).isoformat() and first["ring_event"]["duration_s"] == 2.0
    # The second event's history entry gives no duration: it is read from the MP4 itself.
    assert second["ring_event"]["ends_at"] == (at(12) + timedelta(seconds=3)).isoformat()
    assert [e["event_id"] for e in first["events_in_window"]] == [str(event_id(1)), str(event_id(2))]
    assert result.missing == [TimeWindow(at(9), at(10)), TimeWindow(at(10) + timedelta(seconds=2), at(12)),
                              TimeWindow(at(12) + timedelta(seconds=3), at(20))]
    assert first["uncovered"] == [{"start": w.start.isoformat(), "end": w.end.isoformat()} for w in result.missing]
    assert "2 Ring event(s) start inside the window" in result.note and "no event covers" in result.note
    # Paged back two at a time until an event older than the window: three pages.
    pages = [c.query for c in ring_fake.calls if c.path.endswith(f"{DOORBELL_ID}/history")]
    assert pages == [{"limit": "2"}, {"limit": "2", "older_than": str(event_id(3))},
                     {"limit": "2", "older_than": str(event_id(1))}]
    # The refresh token was rotated at the start of the fetch and the new one saved, with the same hardware id.
    assert saved.secrets == [{"refresh_token": ring_fake.issued_refresh_tokens[-1], "hardware_id": secret["hardware_id"]}]
    assert secret["refresh_token"] not in ring_fake.refresh_tokens
    assert ring_fake.session_hardware_ids[-1] == secret["hardware_id"]
    for leaked in (PASSWORD, CODE, *ring_fake.issued_refresh_tokens, *ring_fake.access_tokens):
        assert leaked not in caplog.text


async def test_a_window_with_no_event_says_that_nothing_covers_it(plugin, tmp_path):
    secret = await linked(plugin)
    sink = CollectingSink(tmp_path)
    window = TimeWindow(at(35), at(45))
    result = await plugin.consentcam_fetch_recording(camera(DOORBELL_ID, secret, Saved()), window, sink)
    assert sink.received == [] and result.clips == []
    assert result.missing == [window]
    assert result.note.startswith("no Ring event starts inside the window")
    assert result.provenance["events_in_window"] == [] and result.provenance["history_complete"] is True


async def test_an_event_that_began_before_the_window_is_reported_not_fetched(plugin, tmp_path):
    secret = await linked(plugin)
    sink = CollectingSink(tmp_path)
    result = await plugin.consentcam_fetch_recording(camera(DOORBELL_ID, secret, Saved()),
                                                     TimeWindow(at(0) + timedelta(seconds=1), at(5)), sink)
    assert sink.received == [] and result.missing == [TimeWindow(at(0) + timedelta(seconds=1), at(5))]
    assert [e["event_id"] for e in result.provenance["events_before_window"]] == [str(event_id(0))]
    assert "started before the window and not fetched" in result.note


async def test_devices_without_recording_access_or_outside_the_account_are_reported(plugin, ring_fake, tmp_path):
    secret = await linked(plugin)
    sink, window = CollectingSink(tmp_path), TimeWindow(at(9), at(20))
    saved = Saved()
    no_plan = await plugin.consentcam_fetch_recording(camera(NO_PLAN_ID, secret, saved), window, sink)
    assert no_plan.note.startswith("no recording access") and no_plan.provenance["recording_access"] is False
    assert no_plan.missing == [window] and not any(c.path.endswith(f"{NO_PLAN_ID}/history") for c in ring_fake.calls)
    secret = saved.secrets[-1]  # the rotated token is the one that works now
    elsewhere = await plugin.consentcam_fetch_recording(camera(123, secret, saved), window, sink)
    assert elsewhere.provenance["reason"] == "device_not_in_account" and elsewhere.missing == [window]
    unlinked = await plugin.consentcam_fetch_recording(camera(DOORBELL_ID, None), window, sink)
    assert unlinked.provenance["reason"] == "no_linked_account"
    assert (await plugin.consentcam_fetch_recording(camera("front", secret), window, sink)).provenance["reason"] == "no_device_id"
    assert sink.received == []
    other_kind = CameraRef("cam-2", "x", CameraConnection("rtsp", {"url": "rtsp://x"}))
    assert await plugin.consentcam_fetch_recording(other_kind, window, sink) is None


async def test_a_refresh_token_ring_no_longer_accepts_is_an_error_the_job_retries(plugin, tmp_path):
    secret = await linked(plugin)
    sink, window = CollectingSink(tmp_path), TimeWindow(at(9), at(20))
    await plugin.consentcam_fetch_recording(camera(DOORBELL_ID, secret, Saved()), window, sink)
    with pytest.raises(CredentialsRejected, match="link the account again"):  # the old token was rotated away
        await plugin.consentcam_fetch_recording(camera(DOORBELL_ID, secret, Saved()), window, sink)


async def test_a_token_that_cannot_be_saved_stops_the_fetch_before_any_download(plugin, ring_fake, tmp_path):
    """The owner unlinked while the job ran: the core's saver refuses the rotated token, and nothing is fetched."""
    from consentcam import ConsentCamError

    async def unlinked(secret: dict) -> None:
        raise ConsentCamError("the owner unlinked the ring account")

    secret = await linked(plugin)
    sink = CollectingSink(tmp_path)
    with pytest.raises(ConsentCamError, match="unlinked"):
        await plugin.consentcam_fetch_recording(camera(DOORBELL_ID, secret, unlinked), TimeWindow(at(9), at(20)), sink)
    assert sink.received == [] and not any(c.path.endswith("/history") for c in ring_fake.calls)


async def test_ring_unreachable_is_device_unreachable(ring_fake, tmp_path):
    from consentcam import DeviceUnreachable

    plugin = RingExportPlugin(session_factory=ring_fake.client_session, work_dir=tmp_path)
    await ring_fake.stop()
    with pytest.raises(DeviceUnreachable, match="Ring could not be reached"):
        await plugin.consentcam_link_account(AccountCredentials("ring", EMAIL, PASSWORD))
