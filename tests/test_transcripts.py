"""A clip's transcript with word timing (JSON, SRT, WebVTT) and transcript search, through the
real API on real Postgres; the cue layout on its own."""
from __future__ import annotations

import io

import srt
import webvtt

from records.captions import CaptionLayout, cues, srt as to_srt, vtt as to_vtt
from records.wire import ChannelCreate, Word
from test_api import AUTH, assert_error, client, control, make_clip, settings  # noqa: F401  (fixtures)


def timed(text: str, start: float = 0.0, step: float = 0.3, pauses: dict[int, float] | None = None) -> list[Word]:
    """One word every ``step`` seconds, plus a pause before the words named in ``pauses``."""
    words, t = [], start
    for i, token in enumerate(text.split()):
        t += (pauses or {}).get(i, 0.0)
        words.append(Word(round(t, 3), round(t + step - 0.05, 3), token))
        t += step
    return words


# -- cue layout ---------------------------------------------------------------------------


def test_cues_break_on_phrases_and_pauses_and_keep_every_word_in_order():
    words = timed("no way, he actually hit that shot from across the map. let's go! "
                  "okay so anyway after the break we will look at the new patch notes together",
                  pauses={13: 1.5})  # fmt: skip
    layout = CaptionLayout(max_chars=28, max_lines=2)
    got = cues(words, layout)
    assert [w for c in got for w in c.words] == words  # nothing lost, nothing reordered
    for c in got:
        assert 1 <= len(c.lines) <= layout.max_lines
        assert all(len(" ".join(w.text for w in line)) <= layout.max_chars for line in c.lines), c.text
        assert c.end - c.start <= layout.max_duration + layout.linger
    # a line ends at a phrase boundary when one is near: "no way," is not split from its phrase,
    # and no line runs across the sentence end "map."
    lines = [" ".join(w.text for w in line) for c in got for line in c.lines]
    assert not any("map. let's" in line for line in lines), lines
    assert lines[0].startswith("no way,")
    # the 1.5 s pause before "okay" starts a new cue
    assert any(c.words[0].text == "okay" for c in got)
    # cues do not overlap, and each starts at its first word
    for a, b in zip(got, got[1:]):
        assert a.end <= b.start and a.start == a.words[0].start


def test_srt_and_vtt_parse_with_real_parsers():
    got = cues(timed("first line here, then <b>a second</b> & more --> words. end"))
    subs = list(srt.parse(to_srt(got)))
    assert len(subs) == len(got) and subs[0].index == 1
    assert [s.content for s in subs] == [c.text for c in got]
    assert subs[0].start.total_seconds() == got[0].start
    captions = webvtt.from_buffer(io.StringIO(to_vtt(got))) if hasattr(webvtt, "from_buffer") \
        else webvtt.read_buffer(io.StringIO(to_vtt(got)))  # fmt: skip
    assert len(captions) == len(got)
    assert "<b>" not in to_vtt(got) and "-->" not in to_vtt(got).split("\n", 3)[3].replace(" --> ", "")
    assert captions[0].text.replace("\n", " ").startswith("first line here,")


# -- API ------------------------------------------------------------------------------------


async def test_transcript_endpoints_give_the_clips_words_timed_inside_the_clip(client, store, tmp_path):
    channel = await store.create_channel(ChannelCreate(name="a", source="rtmp"), {})
    words = timed("he clutched the round, one versus three. unbelievable play from him", start=2.0)
    clip = await make_clip(store, channel["id"], tmp_path, transcript=" ".join(w.text for w in words), words=words)

    shown = (await client.get(f"/api/clips/{clip.id}", headers=AUTH)).json()
    assert shown["captions_url"].startswith(f"/api/clips/{clip.id}/transcript.vtt?exp=")  # signed like the video

    body = (await client.get(f"/api/clips/{clip.id}/transcript.json", headers=AUTH)).json()
    assert [w["text"] for w in body["words"]] == [w.text for w in words]
    assert body["words"][0]["start"] == 2.0 and body["text"] == clip.transcript
    assert " ".join(c["text"].replace("\n", " ") for c in body["cues"]) == clip.transcript

    r = await client.get(f"/api/clips/{clip.id}/transcript.srt", headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-subrip")
    subs = list(srt.parse(r.text))
    assert subs and " ".join(s.content.replace("\n", " ") for s in subs) == clip.transcript
    assert all(0 <= s.start.total_seconds() < s.end.total_seconds() <= clip.duration for s in subs)

    # the player fetches the signed captions URL without a key, as it fetches the video
    r = await client.get(shown["captions_url"])
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/vtt")
    captions = webvtt.from_buffer(io.StringIO(r.text)) if hasattr(webvtt, "from_buffer") \
        else webvtt.read_buffer(io.StringIO(r.text))  # fmt: skip
    assert all(0 <= c.start_in_seconds < c.end_in_seconds <= clip.duration for c in captions)
    assert_error(await client.get(f"/api/clips/{clip.id}/transcript.vtt"), 401, "unauthorized")
    assert_error(await client.get("/api/clips/nope/transcript.srt", headers=AUTH), 404, "not_found")

    bare = await make_clip(store, channel["id"], tmp_path, start=30.0)  # a clip from before word timing
    assert (await client.get(f"/api/clips/{bare.id}", headers=AUTH)).json()["captions_url"] == ""
    assert (await client.get(f"/api/clips/{bare.id}/transcript.vtt", headers=AUTH)).text == "WEBVTT\n\n"


async def test_search_finds_clips_by_transcript_and_ranks_more_matches_higher(client, store, tmp_path):
    a = await store.create_channel(ChannelCreate(name="a", source="rtmp"), {})
    b = await store.create_channel(ChannelCreate(name="b", source="rtmp"), {})
    once = await make_clip(store, a["id"], tmp_path, start=0.0, transcript="a dragon shows up near the bridge")
    often = await make_clip(store, a["id"], tmp_path, start=20.0,
                            transcript="the dragon, the dragon! he killed the dragon with one arrow")  # fmt: skip
    await make_clip(store, a["id"], tmp_path, start=40.0, transcript="nothing to see here")
    other = await make_clip(store, b["id"], tmp_path, start=0.0, transcript="dragons everywhere")

    async def search(**params) -> dict:
        r = await client.get("/api/clips", params=params, headers=AUTH)
        assert r.status_code == 200, r.text
        return r.json()

    got = await search(q="dragon")
    assert got["items"][0]["id"] == often.id  # three mentions rank above one
    assert {c["id"] for c in got["items"]} == {often.id, once.id, other.id}  # "dragons" stems to "dragon"
    assert [c["id"] for c in (await search(q="dragon", channel_id=b["id"]))["items"]] == [other.id]
    assert (await search(q="arrow -bridge"))["items"][0]["id"] == often.id
    assert (await search(q="unicorn"))["items"] == []

    first = await search(q="dragon", channel_id=a["id"], limit=1)  # pages follow the ranking
    assert [c["id"] for c in first["items"]] == [often.id] and first["next"]
    second = await search(q="dragon", channel_id=a["id"], limit=1, before=first["next"])
    assert [c["id"] for c in second["items"]] == [once.id] and second["next"] is None
    assert_error(await client.get("/api/clips", params={"q": "dragon", "before": "zzz"}, headers=AUTH),
                 422, "invalid_request")  # fmt: skip
    assert_error(await client.get("/api/clips", params={"q": ""}, headers=AUTH), 422, "invalid_request")
