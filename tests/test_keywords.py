"""Keyword spotting over ASR words: spelling variants, push boundaries, no duplicates."""
import pytest

from detectors.keywords import DEFAULT_PHRASES, KeywordOptions, KeywordSpotter, compact
from records.wire import Word


def words(text: str, start: float = 10.0) -> list[Word]:
    return [Word(start + i, start + i + 0.4, w) for i, w in enumerate(text.split())]


@pytest.mark.parametrize(
    "said, phrase, t",  # t: the start of the phrase's first word (word i starts at 10 + i)
    [
        ("Let's go!", "let's go", 10.0),
        ("lets go", "let's go", 10.0),
        ("Letsgo", "let's go", 10.0),
        ("LET’S GOOOO!!", "let's go", 10.0),
        ("let's-go", "let's go", 10.0),
        ("Oh, my God!", "oh my god", 10.0),
        ("Oh my god.", "oh my god", 10.0),
        ("OMG", "omg", 10.0),
        ("So my God,", "my god", 11.0),  # tiny.en sometimes hears "Oh" as "So"
        ("Clip it!", "clip it", 10.0),
        ("clip that", "clip that", 10.0),
        ("well what a play", "what a play", 11.0),
        ("That's insane.", "that's insane", 10.0),
        ("in sane", "insane", 10.0),  # ASR split one word in two
        ("no way", "no way", 10.0),
    ],
)
def test_variants_that_match(said, phrase, t):
    signals = KeywordSpotter().push(words(said))
    assert [(s.name, s.detail, s.value) for s in signals] == [("keyword", phrase, DEFAULT_PHRASES[phrase])]
    assert signals[0].t == t


@pytest.mark.parametrize(
    "said",
    [
        "let us go home now",
        "the letters go out tomorrow",  # "letters go" is not "lets go"
        "going to the lab",
        "oh my goodness",
        "clip the video later",
        "what a day",
        "the plan is sane",
        "nobody knows the way",
        "",
    ],
)
def test_variants_that_must_not_match(said):
    assert KeywordSpotter().push(words(said)) == []


def test_phrase_across_push_calls():
    spotter = KeywordSpotter()
    assert spotter.push(words("and then oh", 1.0)) == []
    assert spotter.push(words("my", 4.0)) == []
    signals = spotter.push(words("god, that was close", 5.0))
    assert [(s.detail, s.t) for s in signals] == [("oh my god", 3.0)]


def test_no_double_emission_for_the_same_words():
    spotter = KeywordSpotter()
    said = words("oh my god no way")
    first = spotter.push(said)
    assert [s.detail for s in first] == ["oh my god", "no way"]  # longest phrase wins over "my god"
    assert spotter.push(said) == []  # the same words handed over again
    assert [s.detail for s in spotter.push(words("no way", 30.0))] == ["no way"]  # said again later: new


def test_each_repetition_counts_once():
    signals = KeywordSpotter().push(words("let's go let's go lets gooo"))
    assert [s.t for s in signals] == [10.0, 12.0, 14.0]


def test_custom_phrases_and_weights():
    opts = KeywordOptions(phrases={"GG": 0.5, "what a comeback": 1.5})
    signals = KeywordSpotter(opts).push(words("gg what a comeback let's go"))
    assert [(s.detail, s.value) for s in signals] == [("GG", 0.5), ("what a comeback", 1.5)]


def test_compact():
    assert compact("Let’s  GOOO!") == "letsgo"
    assert compact("good") == "good"  # doubled letters are spelling, not excitement


@pytest.mark.parametrize(
    "said",  # how ASR spells "let's go" (word i starts at 10 + i)
    ["lets go", "let's go", "Let's GOOO!", "letsgo", "let 's go", "Let’s go.", "LETS GO", "let's, go!"],
)
def test_lets_go_spellings(said):
    signals = KeywordSpotter().push(words(said))
    assert [(s.detail, s.t, s.value) for s in signals] == [("let's go", 10.0, 1.0)]


@pytest.mark.parametrize("said", ["let's do", "lets get", "let's get going", "let us go", "let's not go"])
def test_lets_go_near_misses(said):
    assert KeywordSpotter().push(words(said)) == []


@pytest.mark.parametrize("said", ["what a plan", "no say", "clip this", "oh my goat"])
def test_one_letter_off_is_another_phrase_not_a_slip(said):
    """No edit-distance tolerance: for short phrases one letter is a different, ordinary phrase."""
    assert KeywordSpotter().push(words(said)) == []


def test_extra_phrases_add_to_the_defaults():
    opts = KeywordOptions(extra_phrases={"GG": 0.5, "what a comeback": 1.5})
    signals = KeywordSpotter(opts).push(words("gg what a comeback let's go"))
    assert [(s.detail, s.value) for s in signals] == [("GG", 0.5), ("what a comeback", 1.5), ("let's go", 1.0)]


def test_extra_phrases_override_by_any_spelling_and_zero_switches_off():
    opts = KeywordOptions(extra_phrases={"LETS GO": 0.4, "no way": 0})
    spotter = KeywordSpotter(opts)
    signals = spotter.push(words("let's go no way oh my god"))
    assert [(s.detail, s.value) for s in signals] == [("LETS GO", 0.4), ("oh my god", 1.0)]
    assert "no way" in DEFAULT_PHRASES and "no way" not in opts.effective_phrases()
    assert KeywordOptions().extra_phrases == {}  # defaults are not shared between channels


def test_options_from_channel_settings():
    import msgspec

    opts = msgspec.convert({"extra_phrases": {"poggers": 0.7}}, KeywordOptions)
    assert opts.effective_phrases() == {**DEFAULT_PHRASES, "poggers": 0.7}
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"extra_phrase": {"poggers": 0.7}}, KeywordOptions)  # typo: rejected
