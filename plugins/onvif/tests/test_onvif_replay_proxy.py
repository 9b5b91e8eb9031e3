"""The replay proxy's parts, without peers: the RTSP stream parser however the reads cut its input, Digest answers
against the RFCs' own examples, clock times, URL mapping, a recorder that sends bytes that are not RTSP or is out
of reach, and where a clip starts given the recorder's answer. (The proxy at work, between FFmpeg and a recorder,
is in ``test_onvif_fetch.py``.)"""

from __future__ import annotations

import asyncio
import hashlib
import socket
from datetime import UTC, datetime, timedelta, timezone

import pytest
from consentcam import DeviceUnreachable
from consentcam.hooktypes import TimeWindow
from consentcam_onvif import replay
from consentcam_onvif.models import Recording
from consentcam_onvif.replay_proxy import (
    MAX_HEAD,
    MAX_START_LINE,
    Authenticator,
    Challenge,
    Frame,
    Message,
    Parser,
    ReplayProxy,
    ReplaySession,
    RtspProtocolError,
    clock_range,
    clock_time,
    digest_authorization,
    parse_clock_time,
)
from consentcam_rtsp.puller import Pulled, PullOptions, StreamFacts

SDP = (b"v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=replay\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
       b"a=control:rtsp://10.0.0.5:554/recording/stream=0\r\n")
DESCRIBED = (b"RTSP/1.0 200 OK\r\nCSeq: 3\r\nContent-Type: application/sdp\r\n"
             b"Content-Base: rtsp://10.0.0.5:554/recording/\r\nContent-Length: " + str(len(SDP)).encode() + b"\r\n\r\n"
             + SDP)
PLAYING = b"RTSP/1.0 200 OK\r\nCSeq: 5\r\nSession: 12345678\r\nRange: clock=20261130T030000Z-\r\n\r\n"
KEEP_ALIVE = b"GET_PARAMETER rtsp://10.0.0.5:554/recording/ RTSP/1.0\r\nCSeq: 6\r\nSession: 12345678\r\n\r\n"
RTP = Frame(0, bytes(range(256)) * 3).encode()  # 768 bytes, more than one read of a few
RTCP = Frame(1, b"\x81\xc9\x00\x07" + bytes(28)).encode()
# What a recorder sends once playing: packets, answers and keep-alive requests mixed, a stray line end too.
STREAM = RTP + DESCRIBED + RTCP + b"\r\n" + PLAYING + RTP + KEEP_ALIVE + RTCP


def parse_all(chunks: list[bytes]) -> list[Message | Frame]:
    parser = Parser("the recorder")
    items = [item for chunk in chunks for item in parser.feed(chunk)]
    parser.end()
    return items


def kinds(items: list[Message | Frame]) -> list[str]:
    return [f"${item.channel}" if isinstance(item, Frame) else item.start_line.split(" ")[0] for item in items]


# --- the parser ---------------------------------------------------------------------------------------------


def test_a_stream_of_frames_and_messages_parses_into_them():
    items = parse_all([STREAM])
    assert kinds(items) == ["$0", "RTSP/1.0", "$1", "RTSP/1.0", "$0", "GET_PARAMETER", "$1"]
    described = items[1]
    assert isinstance(described, Message) and described.status == 200 and described.body == SDP
    assert described.get("content-base") == "rtsp://10.0.0.5:554/recording/"
    assert items[0] == Frame(0, bytes(range(256)) * 3)
    keep_alive = items[5]
    assert isinstance(keep_alive, Message) and keep_alive.is_request and keep_alive.method == "GET_PARAMETER"


def test_every_cut_of_the_stream_in_two_gives_the_same_items():
    whole = parse_all([STREAM])
    for cut in range(1, len(STREAM)):
        assert parse_all([STREAM[:cut], STREAM[cut:]]) == whole, cut


def test_the_stream_one_byte_at_a_time_gives_the_same_items():
    assert parse_all([STREAM[i:i + 1] for i in range(len(STREAM))]) == parse_all([STREAM])


def test_a_message_waits_for_its_whole_body():
    parser = Parser("the recorder")
    head_end = DESCRIBED.index(b"\r\n\r\n") + 4
    assert parser.feed(DESCRIBED[:head_end]) == []
    assert parser.feed(DESCRIBED[head_end:-1]) == []
    (message,) = parser.feed(DESCRIBED[-1:])
    assert isinstance(message, Message) and message.body == SDP


def test_bare_line_feeds_are_accepted():
    (message,) = parse_all([b"RTSP/1.0 200 OK\nCSeq: 2\nPublic: OPTIONS, DESCRIBE\n\n"])
    assert isinstance(message, Message) and message.get("Public") == "OPTIONS, DESCRIBE"


def test_a_folded_header_line_continues_the_one_above():
    (message,) = parse_all([b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nPublic: OPTIONS,\r\n DESCRIBE\r\n\r\n"])
    assert isinstance(message, Message) and message.get("Public") == "OPTIONS, DESCRIBE"


def test_bytes_that_are_neither_a_message_nor_a_frame_fail_at_once():
    """A desynchronised stream (say, a frame's length was wrong) fails on the first bad byte, never waits."""
    parser = Parser("the recorder")
    with pytest.raises(RtspProtocolError, match="the recorder sent .*neither an RTSP message nor an interleaved frame"):
        parser.feed(RTP + b"\x17\x03\x03\x00\x20")


def test_a_first_line_that_is_not_rtsp_fails_when_it_ends():
    parser = Parser("the recorder")
    assert parser.feed(b"HTTP/1.1 200") == []  # could still be anything
    with pytest.raises(RtspProtocolError, match="not an RTSP request or status line"):
        parser.feed(b" OK\r\n")


def test_a_first_line_that_never_ends_fails_past_its_limit():
    parser = Parser("FFmpeg")
    with pytest.raises(RtspProtocolError, match="first line longer"):
        parser.feed(b"DESCRIBE rtsp://" + b"a" * MAX_START_LINE)


def test_a_head_that_never_ends_fails_past_its_limit():
    parser = Parser("the recorder")
    parser.feed(b"RTSP/1.0 200 OK\r\n")
    with pytest.raises(RtspProtocolError, match="head longer"):
        for _ in range(MAX_HEAD // 20 + 1):
            parser.feed(b"X-Padding: 0123456\r\n")


@pytest.mark.parametrize("length", [b"-1", b"ten", b"99999999999"])
def test_a_bad_content_length_fails(length):
    with pytest.raises(RtspProtocolError, match="Content-Length"):
        Parser("the recorder").feed(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: " + length + b"\r\n\r\n")


def test_a_header_line_without_a_name_fails():
    with pytest.raises(RtspProtocolError, match="header line"):
        Parser("the recorder").feed(b"RTSP/1.0 200 OK\r\nCSeq 1\r\n\r\n")


@pytest.mark.parametrize(("cut", "what"), [(len(RTP) - 1, "an interleaved frame"),
                                           (len(RTP) + 20, "an RTSP message"),
                                           (len(RTP) + len(DESCRIBED) - 5, "an RTSP message")])
def test_a_connection_closed_inside_a_frame_or_a_message_is_an_error(cut, what):
    parser = Parser("the recorder")
    parser.feed(STREAM[:cut])
    with pytest.raises(RtspProtocolError, match=f"closed the connection in the middle of {what}"):
        parser.end()


def test_a_connection_closed_between_items_is_fine():
    parser = Parser("the recorder")
    parser.feed(RTP + PLAYING + b"\r\n")
    parser.end()


def test_a_message_encodes_with_its_own_content_length():
    message = Message("RTSP/1.0 200 OK", [("CSeq", "3"), ("Content-Length", "999")], b"v=0\r\n")
    message.set("cseq", "7")
    encoded = message.encode()
    assert encoded == b"RTSP/1.0 200 OK\r\ncseq: 7\r\nContent-Length: 5\r\n\r\nv=0\r\n"
    (again,) = parse_all([encoded])
    assert again == Message("RTSP/1.0 200 OK", [("cseq", "7"), ("Content-Length", "5")], b"v=0\r\n")


# --- clock times --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("moment", "text"), [
    (datetime(2026, 11, 30, 3, 0, tzinfo=UTC), "20261130T030000Z"),
    (datetime(2026, 11, 30, 3, 0, 0, 500_000, tzinfo=UTC), "20261130T030000.5Z"),
    (datetime(2026, 11, 30, 3, 0, 7, 123_456, tzinfo=UTC), "20261130T030007.123456Z"),
    (datetime(2026, 11, 29, 21, 0, tzinfo=timezone(timedelta(hours=-6))), "20261130T030000Z"),  # written in UTC
])
def test_clock_times_are_utc_with_a_fraction_only_when_there_is_one(moment, text):
    assert clock_time(moment) == text
    assert parse_clock_time(text) == moment


def test_a_clock_range_runs_from_start_to_end():
    start = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
    assert clock_range(start, start + timedelta(minutes=4)) == "clock=20261130T030000Z-20261130T030400Z"


@pytest.mark.parametrize("text", ["20261130T030000", "20261130T0300Z", "20261130T030000.xZ", "now"])
def test_what_is_not_a_utc_clock_time_is_refused(text):
    with pytest.raises(ValueError):
        parse_clock_time(text)


# --- authentication ------------------------------------------------------------------------------------------


def test_digest_answers_the_rfc_2617_example():
    challenge = Challenge.parse('Digest realm="testrealm@host.com", qop="auth,auth-int", '
                                'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"')
    answer = digest_authorization(challenge, "Mufasa", "Circle Of Life", "GET", "/dir/index.html", 1, "0a4f113b")
    assert 'response="6629fae49393a05397450978507c4ef1"' in answer
    assert "qop=auth," in answer and "nc=00000001" in answer and 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in answer


@pytest.mark.parametrize(("algorithm", "response"), [
    ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
])
def test_digest_answers_the_rfc_7616_examples(algorithm, response):
    challenge = Challenge.parse(f'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, '
                                'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
                                'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"')
    answer = digest_authorization(challenge, "Mufasa", "Circle of Life", "GET", "/dir/index.html", 1,
                                  "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")
    assert f'response="{response}"' in answer and f"algorithm={algorithm}" in answer


def test_digest_without_qop_is_the_rfc_2069_answer():
    challenge = Challenge.parse('Digest realm="IP Camera", nonce="abc123"')
    answer = digest_authorization(challenge, "admin", "pw", "DESCRIBE", "rtsp://10.0.0.5/rec", 1, "ignored")

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    expected = md5(f"{md5('admin:IP Camera:pw')}:abc123:{md5('DESCRIBE:rtsp://10.0.0.5/rec')}")
    assert f'response="{expected}"' in answer and "qop" not in answer and "nc=" not in answer


def test_challenge_parameters_may_hold_commas_and_escaped_quotes():
    challenge = Challenge.parse(r'Digest realm="a, \"quoted\" realm", nonce="n", stale=TRUE')
    assert challenge.scheme == "digest"
    assert challenge.params == {"realm": 'a, "quoted" realm', "nonce": "n", "stale": "TRUE"}


def test_the_authenticator_prefers_digest_and_counts_its_nonce():
    unauthorized = Message("RTSP/1.0 401 Unauthorized", [("CSeq", "1"), ("WWW-Authenticate", 'Basic realm="r"'),
                                                         ("WWW-Authenticate", 'Digest realm="r", nonce="n", qop="auth"')])
    auth = Authenticator("owner", "s3cr:t")
    assert auth.header("OPTIONS", "rtsp://h/r") is None  # nothing asked yet
    assert auth.learn(unauthorized) and auth.scheme == "digest"
    first, second = auth.header("OPTIONS", "rtsp://h/r"), auth.header("DESCRIBE", "rtsp://h/r")
    assert first and "nc=00000001" in first and second and "nc=00000002" in second
    assert "s3cr:t" not in first + second + repr(auth)


def test_the_authenticator_answers_basic():
    auth = Authenticator("owner", "pw")
    assert auth.learn(Message("RTSP/1.0 401 Unauthorized", [("WWW-Authenticate", 'Basic realm="r"')]))
    assert auth.header("OPTIONS", "*") == "Basic b3duZXI6cHc="


@pytest.mark.parametrize(("username", "challenge"), [
    (None, 'Basic realm="r"'),  # no credentials to answer with
    ("owner", 'Digest realm="r", nonce="n", algorithm=SHA-512-256'),
    ("owner", 'Digest realm="r", nonce="n", qop="auth-int"'),
    ("owner", 'Negotiate abc'),
])
def test_a_challenge_that_cannot_be_answered_lets_the_401_stand(username, challenge):
    auth = Authenticator(username, "pw" if username else None)
    assert not auth.learn(Message("RTSP/1.0 401 Unauthorized", [("WWW-Authenticate", challenge)]))
    assert auth.header("OPTIONS", "*") is None


# --- the proxy -----------------------------------------------------------------------------------------------

START = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


def proxy_for(uri: str) -> ReplayProxy:
    return ReplayProxy(uri, START, START + timedelta(minutes=4), 120.0, "owner", "pw", timeout_s=5)


async def test_urls_map_between_the_proxy_and_the_recorder():
    uri = "rtsp://10.0.0.5/Streaming/tracks/101?starttime=20261130T030000Z"
    async with proxy_for(uri) as proxy:
        assert proxy.url == proxy.base + "/Streaming/tracks/101?starttime=20261130T030000Z"
        assert proxy.base.startswith("rtsp://127.0.0.1:")
        assert proxy.to_recorder(proxy.url) == uri
        track = "/Streaming/tracks/101/trackID=1"
        assert proxy.to_recorder(proxy.base + track) == "rtsp://10.0.0.5" + track
        assert proxy.to_recorder("*") == "*"
        # Anything not under the proxy's random path is refused.
        assert proxy.to_recorder(proxy.base + "x/Streaming") is None
        assert proxy.to_recorder(proxy.base.rsplit("/", 1)[0] + "/other/Streaming") is None
        # Whatever host the recorder names, and any credentials in it, FFmpeg sees the proxy.
        assert (proxy.to_client("url=rtsp://admin:pw@192.168.1.9:554/Streaming/tracks/101/trackID=1;seq=7;rtptime=0")
                == f"url={proxy.base}/Streaming/tracks/101/trackID=1;seq=7;rtptime=0")
    assert (proxy.recorder_host, proxy.recorder_port) == ("10.0.0.5", 554)
    assert (proxy.clock, proxy.npt) == ("clock=20261130T030000Z-20261130T030400Z", "npt=120.000-")
    assert proxy_for("rtsps://[2001:db8::5]/rec").recorder_port == 322


def test_a_replay_uri_without_a_host_is_refused():
    with pytest.raises(ValueError):
        proxy_for("rtsp:///recording")


async def test_a_recorder_sending_what_is_not_rtsp_ends_the_connection_with_the_reason():
    """The proxy closes FFmpeg's connection (FFmpeg then fails, and the pull retries or gives up) and records why;
    nothing waits for more bytes that will not come."""

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"\x00\x01 this is not RTSP\r\n\r\n")
        await writer.drain()
        await reader.read()  # stays open: only the proxy can end this
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with proxy_for(f"rtsp://127.0.0.1:{port}/recording") as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", int(proxy.base.split(":")[2].split("/")[0]))
            writer.write(f"OPTIONS {proxy.url} RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())
            await writer.drain()
            async with asyncio.timeout(30):  # a guard against a hang, not a measurement
                assert await reader.read() == b""  # closed, no answer
            writer.close()
        (session,) = proxy.sessions
        assert session.error and "neither an RTSP message nor an interleaved frame" in session.error
        assert session.range is None and proxy.played is None
    finally:
        server.close()
        await server.wait_closed()


async def test_a_request_outside_the_proxy_path_is_forbidden():
    async with proxy_for("rtsp://192.0.2.1/recording") as proxy:  # never reached
        port = int(proxy.base.split(":")[2].split("/")[0])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"DESCRIBE rtsp://127.0.0.1:{port}/recording RTSP/1.0\r\nCSeq: 4\r\n\r\n".encode())
        await writer.drain()
        async with asyncio.timeout(30):
            answer = await reader.read()
        writer.close()
    assert answer.startswith(b"RTSP/1.0 403 Forbidden\r\nCSeq: 4\r\n")


async def test_a_recorder_out_of_reach_gets_ffmpeg_a_503_and_the_reason_recorded():
    with socket.socket() as taken:  # a port nothing listens on
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
    async with proxy_for(f"rtsp://127.0.0.1:{port}/recording") as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", int(proxy.base.split(":")[2].split("/")[0]))
        writer.write(f"OPTIONS {proxy.url} RTSP/1.0\r\nCSeq: 2\r\n\r\n".encode())
        await writer.drain()
        async with asyncio.timeout(30):
            answer = await reader.read()
        writer.close()
    assert answer.startswith(b"RTSP/1.0 503 Service Unavailable\r\nCSeq: 2\r\n")
    (session,) = proxy.sessions
    assert session.error and f"could not connect to 127.0.0.1:{port}" in session.error


async def test_a_pull_from_a_recorder_out_of_reach_says_why(tmp_path):
    """Through FFmpeg: the puller's error names the proxy's reason, and no credential."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
    recording = Recording("rec-1", START, START + timedelta(hours=1))
    plan = replay.plan(TimeWindow(START + timedelta(minutes=5), START + timedelta(minutes=6)), [recording])
    options = PullOptions(open_timeout_s=5.0, read_timeout_s=5.0, attempts=1)
    with pytest.raises(DeviceUnreachable) as unreachable:
        await replay.pull(f"rtsp://owner:s3cr3t@127.0.0.1:{port}/recording", plan, tmp_path / "clip.mp4", options,
                          "owner", "s3cr3t")
    assert f"could not connect to 127.0.0.1:{port}" in unreachable.value.detail
    assert "s3cr3t" not in unreachable.value.detail


# --- where the clip starts --------------------------------------------------------------------------------------


def pulled(seconds: float) -> Pulled:
    return Pulled(None, StreamFacts("h264", 320, 240, 10.0, "tcp"), int(seconds * 10), seconds, "length", 0)


@pytest.mark.parametrize(("range_form", "answered", "starts_at"), [
    ("clock", "clock=20261130T030459Z-20261130T035959Z", START + timedelta(minutes=4, seconds=59)),  # a key frame before
    ("clock", "clock=20261130T030500.250Z-", START + timedelta(minutes=5, seconds=0.25)),
    ("npt", "npt=299.000-3600", START + timedelta(seconds=299)),  # our npt counts from the recording's start
    ("clock", "npt=0-60", None),  # an npt answer to a clock range: counted from who knows where
    ("clock", None, None),
    ("clock", "clock=20261330T030000Z-", None),  # month 13
    ("clock", "clock=20261130T020000Z-", None),  # before the recording
    ("clock", "clock=20261130T030700Z-", None),  # after the window
    ("clock", "smpte=0:10:20-", None),
])
def test_the_clip_starts_where_the_recorder_says_it_played_from(range_form, answered, starts_at):
    recording = Recording("rec-1", START, START + timedelta(hours=1))
    asked = TimeWindow(START + timedelta(minutes=5), START + timedelta(minutes=6))
    plan = replay.plan(asked, [recording])
    session = ReplaySession(range=range_form, range_sent="whatever was sent", range_answered=answered)
    span = replay.clip_span(replay.Replayed(pulled(60.0), session), plan)
    start = starts_at or asked.start  # without a usable answer: where it was asked to start
    assert span == TimeWindow(start, start + timedelta(seconds=60))
    covered = replay.within(span, asked)
    assert covered == TimeWindow(max(start, asked.start), min(start + timedelta(seconds=60), asked.end))
