"""A static file server with HTTP Range support, on loopback, that records each request.

Python's ``http.server`` ignores ``Range``; recordings are read by shard, so the VOD tests
need a server that answers ``206 Partial Content`` the way real file hosts and CDNs do.
"""
from __future__ import annotations

import http.server
import re
import threading
from pathlib import Path

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class RangeServer:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._serve(body=False)

            def do_GET(self):
                self._serve(body=True)

            def _serve(self, body: bool) -> None:
                name = self.path.split("?", 1)[0].lstrip("/")
                server.requests.append((name, self.headers.get("Range")))
                path = (server.root / name).resolve()
                if server.root not in path.parents or not path.is_file():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = path.read_bytes()
                size = len(data)
                start, end = 0, size - 1
                match = _RANGE.match(self.headers.get("Range", ""))
                if match and (match.group(1) or match.group(2)):
                    if match.group(1):
                        start = int(match.group(1))
                        end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
                    else:  # a suffix: the last N bytes
                        start = max(0, size - int(match.group(2)))
                    if start >= size:
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{size}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                else:
                    self.send_response(200)
                kind = "application/vnd.apple.mpegurl" if name.endswith(".m3u8") else "video/mp4"
                self.send_header("Content-Type", kind)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(end - start + 1))
                self.end_headers()
                if body:
                    try:
                        self.wfile.write(data[start : end + 1])
                    except (BrokenPipeError, ConnectionResetError):
                        pass  # FFmpeg hangs up once it has read what it needs

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def ranges(self, name: str) -> list[str | None]:
        return [r for n, r in self.requests if n == name]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
