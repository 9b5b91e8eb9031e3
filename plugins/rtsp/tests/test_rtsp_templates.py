"""Playback URLs per recorder family, time zones and credential masking: no peer needed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import unquote, urlsplit

import pytest
from consentcam_rtsp.masking import mask_url, scrub, with_credentials, without_credentials
from consentcam_rtsp.templates import (
    PlaybackConfigError,
    build_playback,
    join_to_camera,
    playback_config,
    whole_seconds,
)

UTC = UTC
CAMERA = "rtsp://192.168.1.64:554/Streaming/Channels/101"


def config(**playback):
    return playback_config({"url": CAMERA, "playback": playback})


def test_hikvision_utc_recorder():
    request = build_playback(config(family="hikvision", timezone="UTC"), CAMERA,
                             datetime(2026, 6, 1, 10, 0, 12, tzinfo=UTC), datetime(2026, 6, 1, 10, 0, 18, tzinfo=UTC))
    assert request.url == ("rtsp://192.168.1.64:554/Streaming/tracks/101"
                           "?starttime=20260601T100012Z&endtime=20260601T100018Z")
    assert request.seconds == 6 and request.notes == ()


def test_hikvision_channel_and_local_time_with_its_literal_z():
    # The quirk: many Hikvision recorders read the digits as their local time despite the Z.
    request = build_playback(config(family="hikvision", timezone="Europe/Berlin", channel=3), CAMERA,
                             datetime(2026, 1, 15, 9, 30, tzinfo=UTC), datetime(2026, 1, 15, 9, 31, tzinfo=UTC))
    assert request.url.endswith("/Streaming/tracks/301?starttime=20260115T103000Z&endtime=20260115T103100Z")


def test_dahua_in_chicago_local_time_summer_and_winter():
    summer = build_playback(config(family="dahua", timezone="America/Chicago"), CAMERA,
                            datetime(2026, 6, 1, 10, 0, 12, tzinfo=UTC), datetime(2026, 6, 1, 10, 0, 16, tzinfo=UTC))
    assert summer.url == ("rtsp://192.168.1.64:554/cam/playback?channel=1"
                          "&starttime=2026_06_01_05_00_12&endtime=2026_06_01_05_00_16")  # CDT, UTC-5
    assert summer.local_start.utcoffset() == timedelta(hours=-5)
    winter = build_playback(config(family="dahua", timezone="America/Chicago", channel=2), CAMERA,
                            datetime(2026, 1, 10, 3, 0, tzinfo=UTC), datetime(2026, 1, 10, 3, 5, tzinfo=UTC))
    # CST, UTC-6, and the local date is the day before.
    assert winter.url.endswith("/cam/playback?channel=2&starttime=2026_01_09_21_00_00&endtime=2026_01_09_21_05_00")


def test_a_window_given_in_another_offset_is_the_same_instant():
    chicago_noon = datetime(2026, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=-5)))
    request = build_playback(config(family="dahua", timezone="America/Chicago"), CAMERA,
                             chicago_noon, chicago_noon + timedelta(minutes=1))
    assert "starttime=2026_06_01_12_00_00" in request.url
    assert request.start == datetime(2026, 6, 1, 17, 0, tzinfo=UTC)


def test_dst_end_in_chicago_is_reported_as_ambiguous():
    # 2026-11-01 01:30 CDT (06:30 UTC) and 01:30 CST (07:30 UTC) both read "01:30" on the recorder.
    request = build_playback(config(family="dahua", timezone="America/Chicago"), CAMERA,
                             datetime(2026, 11, 1, 6, 30, tzinfo=UTC), datetime(2026, 11, 1, 7, 40, tzinfo=UTC))
    assert "starttime=2026_11_01_01_30_00&endtime=2026_11_01_01_40_00" in request.url
    assert any("repeated hour" in note for note in request.notes)
    assert any("change of UTC offset" in note for note in request.notes)


def test_generic_template_with_every_placeholder():
    template = ("/recordings/ch{channel}?from={start:%Y-%m-%dT%H:%M:%S}&to={end:%H%M%S}&u={start_utc:%H%M}"
                "&t0={start_epoch}&t1={end_epoch}&len={duration_s}")
    request = build_playback(config(family="template", template=template, timezone="Asia/Kolkata", channel=7), CAMERA,
                             datetime(2026, 6, 1, 10, 0, 12, tzinfo=UTC), datetime(2026, 6, 1, 10, 0, 18, tzinfo=UTC))
    assert request.url == ("rtsp://192.168.1.64:554/recordings/ch7?from=2026-06-01T15:30:12&to=153018&u=1000"
                           "&t0=1780308012&t1=1780308018&len=6")


def test_a_whole_url_template_loses_any_userinfo():
    request = build_playback(config(family="template", template="rtsp://admin:hunter2@nvr.local:8554/p?s={start_epoch}",
                                    timezone="UTC"), CAMERA,
                             datetime(2026, 6, 1, 10, 0, tzinfo=UTC), datetime(2026, 6, 1, 10, 1, tzinfo=UTC))
    assert request.url == "rtsp://nvr.local:8554/p?s=1780308000"


def test_fractional_windows_widen_to_whole_seconds():
    start, end = whole_seconds(datetime(2026, 6, 1, 10, 0, 12, 400000, tzinfo=UTC),
                               datetime(2026, 6, 1, 10, 0, 17, 100000, tzinfo=UTC))
    assert (start, end) == (datetime(2026, 6, 1, 10, 0, 12, tzinfo=UTC), datetime(2026, 6, 1, 10, 0, 18, tzinfo=UTC))


def test_the_camera_time_zone_is_the_default():
    chosen = playback_config({"url": CAMERA, "playback": {"family": "dahua"}}, "America/Chicago")
    assert chosen is not None and chosen.timezone == "America/Chicago"
    assert playback_config({"url": CAMERA, "playback": {"family": "dahua"}}).timezone == "UTC"


def test_no_playback_means_live_only():
    assert playback_config({"url": CAMERA}) is None


@pytest.mark.parametrize("playback, message", [
    ({"family": "axis"}, "unknown playback family"),
    ({"family": "template"}, "needs a 'template'"),
    ({"family": "dahua", "timezone": "Mars/Olympus"}, "unknown time zone"),
    ("hikvision", "must be an object"),
])
def test_bad_playback_settings_are_refused(playback, message):
    with pytest.raises(PlaybackConfigError, match=message):
        playback_config({"url": CAMERA, "playback": playback})


def test_a_template_with_an_unknown_name_is_refused():
    with pytest.raises(PlaybackConfigError, match="cannot be filled in"):
        build_playback(config(family="template", template="/p?x={begin}", timezone="UTC"), CAMERA,
                       datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 1, 0, 1, tzinfo=UTC))


def test_a_path_needs_an_rtsp_camera_url():
    with pytest.raises(PlaybackConfigError):
        join_to_camera("http://cam.local/", "/x")


def test_a_password_pasted_unencoded_is_not_echoed_in_the_error():
    # urlsplit takes "admin:pa" for the host and "ss" for a port when the password holds a raw '/'.
    with pytest.raises(PlaybackConfigError) as caught:
        join_to_camera("rtsp://admin:pa/ss@10.0.0.5/x", "/y")
    assert "admin:pa" not in str(caught.value) and "pa/ss" not in str(caught.value)


# --- credentials in URLs --------------------------------------------------------------------------------


def test_credentials_are_percent_encoded_and_masked():
    password = "s3cr:t/p@ss%w0rd"
    url = with_credentials("rtsp://10.0.0.5:554/cam/playback?channel=1", "ad min", password)
    parts = urlsplit(url)
    assert unquote(parts.username) == "ad min" and unquote(parts.password) == password
    assert parts.hostname == "10.0.0.5" and parts.port == 554 and parts.query == "channel=1"
    assert mask_url(url) == "rtsp://***@10.0.0.5:554/cam/playback?channel=1"
    assert without_credentials(url) == "rtsp://10.0.0.5:554/cam/playback?channel=1"
    assert with_credentials("rtsp://h/x", None, None) == "rtsp://h/x"


def test_scrub_masks_urls_and_bare_secrets_in_any_message():
    password = "s3cr:t/p@ss%w0rd"
    url = with_credentials("rtsp://10.0.0.5:554/x", "owner", password)
    message = f"Server returned 401 Unauthorized: '{url}'; raw {password}; encoded s3cr%3At%2Fp%40ss%25w0rd"
    cleaned = scrub(message, [password])
    assert password not in cleaned and "s3cr%3At" not in cleaned and "s3cr" not in cleaned
    assert "rtsp://***@10.0.0.5:554/x" in cleaned
