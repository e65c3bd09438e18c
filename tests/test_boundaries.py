"""Clip edges snapped to word and sentence boundaries, on words timed like whisper's."""
import numpy as np
import pytest

import media

from bench.broadcast import CALM_SENTENCES
from detectors.boundaries import sentences, snap_clip
from records.wire import Word


def say(sentences_, start: float = 0.0) -> list[Word]:
    return media.timed_words(sentences_, start, gap=0.8)


# Words every 0.3 s (0.25 s long), 0.8 s pauses between sentences:
# "Welcome back to the stream, everyone." 0.0-1.75, "Today we are looking at the new map and
# the changes to the economy." 2.6-6.75 ("at" 3.8-4.05, "the" 4.1-4.35, "and" 5.0-5.25,
# "the" 5.3-5.55, "economy." 6.5-6.75), "The weather in the north ..." from 7.6.
WORDS = say(CALM_SENTENCES[:3])
S1, S2, S3 = sentences(WORDS)


def test_sentences():
    assert (S1, S2, S3[0]) == ((0.0, 1.75), (2.6, 6.75), 7.6)
    no_punctuation = [Word(w.start, w.end, w.text.rstrip(".,")) for w in WORDS]
    assert sentences(no_punctuation, gap=0.5) == [S1, S2, S3]  # the pauses alone
    assert len(sentences(no_punctuation, gap=1.0)) == 1  # pauses too short to count


def test_start_mid_sentence_goes_to_the_sentence_start():
    assert snap_clip(4.07, 12.0, WORDS)[0] == 2.6  # between "at" and "the", 1.47 s in
    assert snap_clip(4.2, 12.0, WORDS)[0] == 2.6  # inside "the"


def test_end_mid_sentence_goes_to_the_sentence_end():
    assert snap_clip(0.5, 5.1, WORDS) == (0.0, 6.75)


def test_start_inside_a_word_moves_to_its_start_when_no_sentence_edge_is_near():
    # Inside "the" (5.3-5.55): the sentence start is 2.8 s back, the next one 2.2 s ahead.
    assert snap_clip(5.4, 12.0, WORDS, max_extend=2.0, max_trim=1.0)[0] == 5.3


def test_end_inside_a_word_moves_to_its_end_when_no_sentence_edge_is_near():
    # Inside "looking" (3.5-3.75): the sentence end is 3.15 s ahead, the previous one 1.85 s back.
    assert snap_clip(0.0, 3.6, WORDS, max_extend=1.0, max_trim=0.5) == (0.0, 3.75)


def test_start_trims_to_the_next_sentence_when_its_own_is_too_far_back():
    # Inside "economy." (6.5-6.75): 4.0 s into the sentence, 1.0 s before the next one.
    assert snap_clip(6.6, 12.0, WORDS, max_extend=3.0, max_trim=1.0)[0] == 7.6
    assert snap_clip(6.6, 12.0, WORDS, max_extend=3.0, max_trim=0.5)[0] == 6.5  # too far: the word
    assert snap_clip(6.6, 12.0, WORDS, max_extend=4.0, max_trim=1.0)[0] == 2.6  # extending wins
    assert snap_clip(6.6, 7.0, WORDS, max_extend=3.0, max_trim=1.0) == (6.5, 7.0)  # never past the end


def test_end_trims_back_to_the_previous_sentence():
    # Inside "Today" (2.6-2.85): 4.05 s before the sentence's end, 0.95 s after the previous one.
    assert snap_clip(0.0, 2.7, WORDS, max_extend=3.0, max_trim=1.0) == (0.0, 1.75)
    assert snap_clip(0.0, 2.7, WORDS, max_extend=3.0, max_trim=0.5) == (0.0, 2.85)


def test_edges_in_pauses_are_unchanged():
    assert snap_clip(2.0, 7.2, WORDS) == (2.0, 7.2)
    assert snap_clip(-5.0, 100.0, WORDS) == (-5.0, 100.0)  # outside the transcript


def test_no_words_unchanged():
    assert snap_clip(3.3, 9.9, []) == (3.3, 9.9)
    assert snap_clip(3.3, 9.9, [Word(3.0, 4.0, " ")]) == (3.3, 9.9)


def test_between_words_of_a_long_sentence_stays():
    # 5.27 falls between "and" and "the", 2.67 s into the sentence: no word is cut.
    assert snap_clip(5.27, 12.0, WORDS, max_extend=2.0, max_trim=0.5)[0] == 5.27


@pytest.mark.parametrize("max_extend, max_trim", [(3.0, 1.0), (1.0, 0.3), (0.0, 0.0)])
def test_never_mid_word_and_limits_respected(max_extend, max_trim):
    words = say(CALM_SENTENCES[:6], start=10.0)
    longest_word = max(w.end - w.start for w in words)
    for start in np.arange(9.0, 40.0, 0.07):
        end = start + 15.0
        s, e = snap_clip(float(start), end, words, max_extend=max_extend, max_trim=max_trim)
        assert s <= e
        for w in words:
            assert not (w.start < s < w.end) and not (w.start < e < w.end), (start, s, e, w)
        assert -max(max_extend, longest_word) - 1e-9 <= s - start <= max_trim + 1e-9
        assert -max_trim - 1e-9 <= e - end <= max(max_extend, longest_word) + 1e-9


def test_whisper_style_punctuation_and_unsorted_words():
    words = [Word(2.0, 2.4, "Yes!"), Word(0.0, 0.3, "we"), Word(0.35, 0.9, "won"), Word(1.0, 1.5, "it!\"")]
    assert sentences(words) == [(0.0, 1.5), (2.0, 2.4)]
    assert snap_clip(0.5, 2.2, words) == (0.0, 2.4)
