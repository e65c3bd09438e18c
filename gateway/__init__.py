"""livecut gateway: the REST API, the Socket.IO clip feed and the feed page, in one ASGI app."""
