"""RTMP ingest at the edge: one port for every channel, routed by stream key, each publish
forwarded as a plain FLV byte stream (see ``server.RtmpServer`` and ``forward.open_tcp_sink``)."""
from .forward import TcpSink, open_tcp_sink
from .server import OnPublish, PublishSink, RtmpServer

__all__ = ["OnPublish", "PublishSink", "RtmpServer", "TcpSink", "open_tcp_sink"]
