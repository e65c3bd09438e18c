"""Chat signals: the pure detector on scripted chat, IRC parsing, and the Twitch chat client
end to end against a real IRC server (Debian's ngircd on loopback) fed by scripted chatters."""
from __future__ import annotations

import random
import socket
import threading
import time

import pytest

from detectors.chat import ChatActivityDetector, ChatMessage, ChatOptions
from irc_fixture import Ngircd, ScriptedChat, ngircd_path
from stream_actor.chat import (
    ChatFeed,
    TwitchChatClient,
    emote_count,
    parse_irc_line,
    to_stream_time,
    twitch_login_from_url,
)

CHATTER = ("hello", "what is this build", "nice", "lol no", "gg", "is he going left?", "first time here")
HYPE = ("Pog", "PogChamp", "KEKW", "OMEGALUL", "LUL LUL", "NO WAY Pog", "W", "monkaS")


def poisson(rng: random.Random, t0: float, t1: float, rate: float, users: range | int, texts=CHATTER):
    """Messages at Poisson times in [t0, t1) from random users of ``users``."""
    users = range(users) if isinstance(users, int) else users
    out: list[ChatMessage] = []
    t = t0
    while (t := t + rng.expovariate(rate)) < t1:
        out.append(ChatMessage(t=round(t, 4), user=f"u{rng.choice(users)}", text=rng.choice(texts)))
    return out


def feed(detector: ChatActivityDetector, messages: list[ChatMessage], end: float, step: float = 0.5):
    """Push ``messages`` in batches of ``step`` seconds, advancing to each batch's end."""
    out = []
    messages = sorted(messages, key=lambda m: m.t)
    i, t = 0, 0.0
    while t < end:
        t = round(t + step, 6)
        batch = []
        while i < len(messages) and messages[i].t < t:
            batch.append(messages[i])
            i += 1
        out += detector.push(batch) + detector.advance(t)
    return out


# -- the detector -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_burst_against_a_quiet_baseline_fires_once_at_its_onset(seed):
    rng = random.Random(seed)
    chat = (
        poisson(rng, 0, 300, 1.0, 30)
        + poisson(rng, 300, 305, 15.0, range(20, 80))  # the moment: 15 msg/s for 5 s
        + poisson(rng, 305, 420, 1.0, 30)
    )
    signals = feed(ChatActivityDetector(), chat, 420)
    rate = [s for s in signals if s.name == "chat"]
    assert len(rate) == 1, signals
    (s,) = rate
    delay = ChatOptions().reaction_delay
    assert 300 - delay - 1.0 <= s.t <= 300 - delay + 1.0, s  # the onset, less the reaction time
    assert s.value >= 1.0
    assert "msg/s" in s.detail
    assert [x.name for x in signals] == ["chat"]  # plain words: no emote burst


@pytest.mark.parametrize("rate", [0.3, 3.0, 10.0, 30.0])
def test_steady_busy_chat_does_not_fire(rate):
    rng = random.Random(int(rate * 10))
    # Busy and emote-heavy throughout (about 1 message in 3 has an emote): nothing stands out.
    chat = poisson(rng, 0, 600, rate, max(20, int(rate * 30)), CHATTER + HYPE[:4])
    assert feed(ChatActivityDetector(), chat, 600) == []


def test_single_spammer_does_not_fire():
    rng = random.Random(7)
    chat = poisson(rng, 0, 300, 1.0, 30)
    spam = [ChatMessage(t=200 + i * 0.05, user="bot", text="BUY FOLLOWERS Pog") for i in range(400)]  # 20 msg/s, 20 s
    assert feed(ChatActivityDetector(), chat + spam, 300) == []


def test_a_few_chatters_spamming_do_not_fire():
    rng = random.Random(8)
    chat = poisson(rng, 0, 300, 1.0, 30)
    spam = [ChatMessage(t=200 + i * 0.05, user=f"s{i % 3}", text="KEKW") for i in range(200)]  # 3 users
    assert feed(ChatActivityDetector(), chat + spam, 300) == []


def test_emote_burst_fires_without_a_rate_burst():
    rng = random.Random(9)
    chat = (
        poisson(rng, 0, 240, 3.0, 40)
        + poisson(rng, 240, 250, 3.0, 40, ("KEKW", "KEKW KEKW", "OMEGALUL", "lmao KEKW", "LUL"))  # same rate
        + poisson(rng, 250, 330, 3.0, 40)
    )
    signals = feed(ChatActivityDetector(), chat, 330)
    assert [s.name for s in signals] == ["emote"], signals
    (s,) = signals
    assert 240 - 2.5 - 1.5 <= s.t <= 240 - 2.5 + 1.5, s
    assert s.value >= 1.0 and "KEKW" in s.detail


def test_native_emotes_from_the_tag_count():
    rng = random.Random(10)
    chat = poisson(rng, 0, 240, 3.0, 40)
    # Twitch-tagged emotes (e.g. a channel's own sub emotes) are not in the word list.
    chat += [ChatMessage(t=m.t, user=m.user, text="ronniHype ronniHype", emotes=2) for m in poisson(rng, 240, 250, 3.0, 40)]
    signals = feed(ChatActivityDetector(), chat, 270)
    assert [s.name for s in signals] == ["emote"], signals


def test_a_raid_fires_once_and_becomes_the_new_normal():
    rng = random.Random(11)
    chat = poisson(rng, 0, 200, 1.0, 30) + poisson(rng, 200, 500, 12.0, range(30, 300)) + poisson(rng, 500, 560, 12.0, 300)
    signals = feed(ChatActivityDetector(), chat, 560)
    assert [s.name for s in signals] == ["chat"], signals


def test_bursts_fire_again_after_release():
    rng = random.Random(12)
    chat = poisson(rng, 0, 400, 1.0, 30)
    for start in (150, 250, 350):
        chat += poisson(rng, start, start + 5, 15.0, range(30, 80))
    signals = feed(ChatActivityDetector(), chat, 400)
    assert [round(s.t + 2.5, -1) for s in signals if s.name == "chat"] == [150, 250, 350], signals


def test_no_fire_while_warming_up():
    rng = random.Random(13)
    chat = poisson(rng, 0, 30, 15.0, 60) + poisson(rng, 30, 200, 1.0, 30)  # starts in a burst
    chat += poisson(rng, 20, 25, 15.0, 60)
    assert feed(ChatActivityDetector(), chat, 200) == []


def test_same_result_whatever_the_batching():
    rng = random.Random(14)
    chat = (
        poisson(rng, 0, 200, 2.0, 30)
        + poisson(rng, 200, 206, 18.0, range(30, 90), HYPE)
        + poisson(rng, 206, 300, 2.0, 30)
    )
    reference = feed(ChatActivityDetector(), chat, 300, step=0.5)
    assert {s.name for s in reference} == {"chat", "emote"}
    for step in (0.013, 0.37, 1.0, 7.3):
        assert feed(ChatActivityDetector(), chat, 300, step=step) == reference
    one_by_one = ChatActivityDetector()
    out = []
    for m in sorted(chat, key=lambda m: m.t):
        out += one_by_one.push([m])
    out += one_by_one.advance(300)
    assert out == reference
    all_at_once = ChatActivityDetector()
    assert all_at_once.push(chat) + all_at_once.advance(300) == reference


def test_reaction_delay_shifts_the_signal():
    rng = random.Random(15)
    chat = poisson(rng, 0, 200, 1.0, 30) + poisson(rng, 200, 205, 15.0, range(30, 90)) + poisson(rng, 205, 240, 1.0, 30)
    (a,) = feed(ChatActivityDetector(ChatOptions(reaction_delay=0.0)), chat, 240)
    (b,) = feed(ChatActivityDetector(ChatOptions(reaction_delay=4.0)), chat, 240)
    assert b.t == pytest.approx(a.t - 4.0)


def test_a_gap_with_no_news_is_not_a_quiet_chat():
    rng = random.Random(16)
    # Busy chat, then nothing is heard for two minutes (not live; no advance), then busy again.
    chat = poisson(rng, 0, 200, 6.0, 100) + poisson(rng, 320, 500, 6.0, 100)
    d = ChatActivityDetector()
    out = feed(d, [m for m in chat if m.t < 200], 200)
    out += d.push([m for m in chat if m.t >= 320])
    out += d.advance(500)
    assert out == []


def test_options_are_strict():
    import msgspec

    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"window": 3}, ChatOptions)
    assert msgspec.convert({"reaction_delay": 1.0}, ChatOptions).reaction_delay == 1.0
    with pytest.raises(ValueError):
        ChatActivityDetector(ChatOptions(bin_seconds=2.0, window_seconds=1.0))


# -- IRC lines ----------------------------------------------------------------------------

TWITCH_PRIVMSG = (
    "@badge-info=;badges=broadcaster/1;color=#0D4200;display-name=Ronni;emotes=25:0-4,12-16/1902:6-10;"
    "id=b34ccfc7-4977-403a-8a94-33c6bac34fb8;mod=0;room-id=1337;subscriber=0;tmi-sent-ts=1507246572675;"
    "turbo=1;user-id=1337;user-type= :ronni!ronni@ronni.tmi.twitch.tv PRIVMSG #ronni :Kappa Keepo Kappa"
)


@pytest.mark.parametrize(
    "line, tags, prefix, command, params",
    [
        (
            TWITCH_PRIVMSG,
            {"emotes": "25:0-4,12-16/1902:6-10", "user-id": "1337", "user-type": "", "badge-info": "", "display-name": "Ronni"},
            "ronni!ronni@ronni.tmi.twitch.tv", "PRIVMSG", ["#ronni", "Kappa Keepo Kappa"],
        ),
        (
            r"@msg-id=sub;system-msg=ronni\shas\ssubscribed\:\sa\\b;flag :tmi.twitch.tv USERNOTICE #ronni",
            {"system-msg": "ronni has subscribed; a\\b", "flag": "", "msg-id": "sub"},
            "tmi.twitch.tv", "USERNOTICE", ["#ronni"],
        ),
        ("PING :tmi.twitch.tv", {}, None, "PING", ["tmi.twitch.tv"]),
        (":tmi.twitch.tv 001 justinfan12345 :Welcome, GLHF!", {}, "tmi.twitch.tv", "001", ["justinfan12345", "Welcome, GLHF!"]),
        (
            ":irc.livecut.test 353 justinfan12345 = #chan :@justinfan12345 viewer01",
            {}, "irc.livecut.test", "353", ["justinfan12345", "=", "#chan", "@justinfan12345 viewer01"],
        ),
        (
            ":irc.livecut.test CAP * NAK :twitch.tv/tags twitch.tv/commands",
            {}, "irc.livecut.test", "CAP", ["*", "NAK", "twitch.tv/tags twitch.tv/commands"],
        ),
        (":tmi.twitch.tv RECONNECT", {}, "tmi.twitch.tv", "RECONNECT", []),
        (":u!u@h privmsg #c :hi :) there  ", {}, "u!u@h", "PRIVMSG", ["#c", "hi :) there  "]),
        (":u!u@h PRIVMSG #c :", {}, "u!u@h", "PRIVMSG", ["#c", ""]),
        (":u!u@h JOIN #c\r\n", {}, "u!u@h", "JOIN", ["#c"]),
        ("ERROR :Closing connection", {}, None, "ERROR", ["Closing connection"]),
    ],
)
def test_parse_irc_line(line, tags, prefix, command, params):
    got_tags, got_prefix, got_command, got_params = parse_irc_line(line)
    assert {k: got_tags[k] for k in tags} == tags
    assert (got_prefix, got_command, got_params) == (prefix, command, params)


@pytest.mark.parametrize("line", ["", "   ", ":only.a.prefix", "@a=b"])
def test_parse_irc_line_rejects_lines_without_a_command(line):
    with pytest.raises(ValueError):
        parse_irc_line(line)


@pytest.mark.parametrize(
    "tag, count", [(None, 0), ("", 0), ("25:0-4", 1), ("25:0-4,12-16/1902:6-10", 3), ("301:0-7,9-16,18-25", 3)]
)
def test_emote_count(tag, count):
    assert emote_count(tag) == count


@pytest.mark.parametrize(
    "url, login",
    [
        ("https://www.twitch.tv/Some_Streamer", "some_streamer"),
        ("https://twitch.tv/shroud/", "shroud"),
        ("http://m.twitch.tv/shroud?referrer=raid", "shroud"),
        ("twitch.tv/shroud", "shroud"),
        ("https://www.twitch.tv/videos/123456", None),
        ("https://www.twitch.tv/shroud/clip/SomeClip", None),
        ("https://www.twitch.tv/directory", None),
        ("https://www.youtube.com/@shroud", None),
        ("https://example.com/twitch.tv/shroud", None),
        (None, None),
    ],
)
def test_twitch_login_from_url(url, login):
    assert twitch_login_from_url(url) == login


def test_to_stream_time():
    msgs = [ChatMessage(t=1000.5, user="a", text="x"), ChatMessage(t=1003.0, user="b", text="y")]
    assert [m.t for m in to_stream_time(msgs, (1000.0, 42.0))] == [42.5, 45.0]


# -- the client against a scripted Twitch-like server --------------------------------------


def test_client_speaks_twitch_irc():
    """Tags, PING/PONG and RECONNECT, against a loopback server scripted like Twitch's."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    seen: list[list[str]] = []
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            for attempt in range(2):
                conn, _ = server.accept()
                with conn, conn.makefile("rb") as rfile:
                    lines: list[str] = []
                    seen.append(lines)

                    def expect(prefix: str) -> str:
                        while True:
                            line = rfile.readline().decode().rstrip("\r\n")
                            assert line, f"connection closed before {prefix!r}"
                            lines.append(line)
                            if line.startswith(prefix):
                                return line

                    nick = expect("NICK ").split()[1]
                    expect("CAP END")
                    conn.sendall(b":tmi.twitch.tv CAP * ACK :twitch.tv/tags twitch.tv/commands\r\n")
                    conn.sendall(f":tmi.twitch.tv 001 {nick} :Welcome, GLHF!\r\n".encode())
                    expect("JOIN #ronni")
                    conn.sendall(f":{nick}!{nick}@{nick}.tmi.twitch.tv JOIN #ronni\r\n".encode())
                    conn.sendall((TWITCH_PRIVMSG + "\r\n").encode())
                    conn.sendall(b":x!x@x PRIVMSG #other :not ours\r\n")
                    conn.sendall(b"PING :tmi.twitch.tv\r\n")
                    expect("PONG :tmi.twitch.tv")
                    if attempt == 0:
                        conn.sendall(b":tmi.twitch.tv RECONNECT\r\n")
                        rfile.read()  # until the client hangs up
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = TwitchChatClient("Ronni", "127.0.0.1", port, tls=False, backoff=(5.0, 30.0))
    stop = threading.Event()
    got: list[ChatMessage] = []
    deadline = time.monotonic() + 10
    before = time.time()
    for batch in client.batches(stop, interval=0.1):
        got += batch
        if len(got) >= 2 or errors or time.monotonic() > deadline:
            break
    client.close()
    thread.join(5)
    server.close()
    assert not errors, errors
    assert len(seen) == 2, "no reconnect after RECONNECT"
    hello = seen[0]
    assert hello[0] == "CAP REQ :twitch.tv/tags twitch.tv/commands"
    assert "PASS SCHMOOPIIE" in hello and any(line.startswith("NICK justinfan") for line in hello)
    assert [(m.user, m.text, m.emotes) for m in got] == [("1337", "Kappa Keepo Kappa", 3)] * 2
    assert all(before <= m.t <= time.time() for m in got)
    assert client.connects == 2  # RECONNECT skips the backoff (5 s here): came back at once


# -- end to end against ngircd ------------------------------------------------------------------


@pytest.fixture
def ngircd(tmp_path):
    server = Ngircd(tmp_path / "ngircd", ngircd_path()).start()
    try:
        yield server
    finally:
        server.stop()


# Compressed time for the end-to-end runs: half-second bins, a 2 s window, 6 s of warm-up.
FAST = ChatOptions(bin_seconds=0.5, window_seconds=2.0, baseline_seconds=30.0, warmup_seconds=6.0,
                   release_seconds=2.0, reaction_delay=1.0)


def _script(rng: random.Random, t0: float, t1: float, rate: float, users: range, texts) -> list[tuple[float, int, str]]:
    out = []
    t = t0
    while (t := t + rng.expovariate(rate)) < t1:
        out.append((t, rng.choice(users), rng.choice(texts)))
    return out


def _run_channel(server: Ngircd, channel: str, prefix: str, script, start_at: float, end: float, results: dict):
    """Join ``channel`` with the client, play ``script`` with 30 chatters, and collect the
    signals of a ChatFeed whose stream time is seconds since ``start_at``."""
    chat = ScriptedChat(server.host, server.port, "#" + channel, 30, prefix=prefix)
    client = TwitchChatClient(channel, server.host, server.port, tls=False)
    feed = ChatFeed(client, ChatActivityDetector(FAST), lambda: (start_at, 0.0), lambda s: None, interval=0.25)
    stop = threading.Event()
    reader = threading.Thread(target=feed.run, args=(stop,), daemon=True)
    reader.start()
    try:
        assert client.joined.wait(10), f"client did not join #{channel}: {client.last_error}\n{server.log_tail()}"
        results[channel + ".ready"].set()
        chat.play(script, start=start_at)
        while time.time() < start_at + end + 1.0:  # the last bins close
            time.sleep(0.1)
    finally:
        stop.set()
        reader.join(5)
        chat.close()
    results[channel] = (feed.signals, client.messages, len(chat.sent))


def test_end_to_end_burst_fires_once_and_busy_chat_does_not(ngircd):
    """Two channels at once on one ngircd: a quiet chat that bursts, and a steady busy one."""
    rng = random.Random(21)
    burst_at, end = 10.0, 17.0
    quiet = (
        _script(rng, 0, burst_at, 1.5, range(10), CHATTER)
        + _script(rng, burst_at, burst_at + 4, 20.0, range(30), HYPE)
        + _script(rng, burst_at + 4, end, 1.5, range(10), CHATTER)
    )
    busy = _script(rng, 0, end, 10.0, range(30), CHATTER * 3 + HYPE)  # ~25 % emotes, all along
    start_at = time.time() + 3.0  # both scripts start together once everyone has joined
    results: dict = {"burst.ready": threading.Event(), "busy.ready": threading.Event()}
    threads = [
        threading.Thread(target=_run_channel, args=(ngircd, "burst", "q", quiet, start_at, end, results)),
        threading.Thread(target=_run_channel, args=(ngircd, "busy", "b", busy, start_at, end, results)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results["burst.ready"].is_set() and results["busy.ready"].is_set(), ngircd.log_tail()

    signals, received, sent = results["burst"]
    assert received == sent == len(quiet), "the server dropped or throttled chat"
    chat = [s for s in signals if s.name == "chat"]
    assert len(chat) == 1, signals
    assert burst_at - FAST.reaction_delay - 1.0 <= chat[0].t <= burst_at - FAST.reaction_delay + 1.0, chat
    emote = [s for s in signals if s.name == "emote"]
    assert len(emote) == 1 and abs(emote[0].t - chat[0].t) <= 1.5, signals  # the burst is all emotes

    signals, received, sent = results["busy"]
    assert received == sent == len(busy), "the server dropped or throttled chat"
    assert signals == []


def test_client_reconnects_when_the_server_restarts(ngircd):
    client = TwitchChatClient("comeback", ngircd.host, ngircd.port, tls=False, backoff=(0.2, 1.0))
    stop = threading.Event()
    got: list[ChatMessage] = []
    reader = threading.Thread(target=lambda: [got.extend(b) for b in client.batches(stop, 0.1)], daemon=True)
    reader.start()
    try:
        assert client.joined.wait(10), client.last_error
        ngircd.stop()
        deadline = time.monotonic() + 5
        while client.joined.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not client.joined.is_set()
        ngircd.start(port=ngircd.port)
        assert client.joined.wait(10), f"no rejoin: {client.last_error}\n{ngircd.log_tail()}"
        chat = ScriptedChat(ngircd.host, ngircd.port, "#comeback", 1)
        try:
            chat.play([(0.0, 0, "back PogChamp")])
            deadline = time.monotonic() + 5
            while not got and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            chat.close()
    finally:
        stop.set()
        client.close()
        reader.join(5)
    assert [(m.user, m.text) for m in got] == [("viewer00", "back PogChamp")]
    assert client.connects >= 2
