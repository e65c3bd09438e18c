"""Pure, synchronous detectors over numpy windows (no I/O, no threads, no Ray).

Each detector is fed incrementally with ``push(...)`` and returns what became final, in
stream time, so the same code runs live (small chunks) and in batch (a whole file):

* :mod:`detectors.loudness` - crowd roars and yells against the stream's own baseline.
* :mod:`detectors.speech` - streaming faster-whisper transcription (words in stream time).
* :mod:`detectors.keywords` - hype phrases in those words.
* :mod:`detectors.scene` - hard cuts between low-rate keyframes.
* :mod:`detectors.fusion` - signals that agree in time become one :class:`MomentEvent`.
"""
