"""The stream actor's media plumbing, free of Ray.

``sources`` connect to a broadcast (RTMP push relayed as FLV over TCP, or a URL) and
yield sessions of demuxed packets; ``clock.StreamClock`` maps their raw timestamps to
monotonic stream time; ``ring_buffer.RingBuffer`` keeps the last minutes on disk as
keyframe-aligned MPEG-TS segments (stream copy); ``clipper.cut_clip`` stream-copies a
range of them into a fast-start MP4 plus a JPEG thumbnail; ``decode`` turns packets
into what the detectors eat (16 kHz mono audio, tiny grayscale keyframes).

The Ray actor wires them: source -> clock -> ring buffer -> decoders -> detectors ->
fusion -> clipper -> publisher.
"""
