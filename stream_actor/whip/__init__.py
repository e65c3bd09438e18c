"""WHIP media (RFC 9725), run in the channel's stream actor: WebRTC publishers (OBS 30+,
FFmpeg 8+, browsers) feed the same FLV ingest as RTMP. The HTTP side is ``gateway.whip``.

- ``sessions``: ``WhipSessions``, the sessions this process hosts (what the gateway calls);
- ``session``: one publisher's peer connection, media pipeline and sink, and how it ends;
- ``media``: ``MediaPipeline`` re-encodes received tracks into FLV for a ``PublishSink``;
- ``sdp``: which offers can be answered, and the answer's candidate order;
- ``ffmpeg_compat``: the workarounds FFmpeg's WHIP muxer needs (aiortc internals, checked at start);
- ``options``: ``WhipOptions``, the operator's settings, sent with each offer.

A session ends on the gateway's DELETE, on ICE/DTLS failure or close, when the publisher's
tracks end, when no media arrives for ``idle_timeout`` (or none within ``connect_timeout``
of the offer), on a sink or encoder error, and when the actor stops. Its sink is closed
exactly once.
"""
