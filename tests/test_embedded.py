"""The embedded Redis a fresh machine falls back to: starts, serves streams, stops cleanly,
and a stale one left by a killed livecut is replaced rather than duplicated."""
import os

import psutil
import redis

from records.embedded import EmbeddedRedis


def test_embedded_redis_serves_streams_and_replaces_a_stale_one(tmp_path):
    first = EmbeddedRedis(tmp_path)
    client = redis.Redis(unix_socket_path=str(first.socket))
    client.xadd("s", {"data": b"x"})
    assert client.xlen("s") == 1
    client.close()
    stale_pid = first.process.pid
    os.kill(stale_pid, 0)  # running
    second = EmbeddedRedis(tmp_path)  # as after a SIGKILL of livecut: the old one is still there
    try:
        first.process.wait(5)
        assert not psutil.pid_exists(stale_pid) or psutil.Process(stale_pid).status() == psutil.STATUS_ZOMBIE
        client = redis.Redis(unix_socket_path=str(second.socket))
        assert client.xlen("s") == 1  # appendonly: data survived the restart
        client.close()
    finally:
        second.stop()
    assert second.process.poll() is not None
    assert not second.socket.exists()
