"""A small HTTP server with the Hugging Face hub's `resolve` layout, for tests.

HEAD/GET /{repo_id}/resolve/{revision}/{filename} answer with the headers huggingface_hub reads
(X-Repo-Commit, ETag = SHA-256 as for LFS files, Content-Length). GET honours `Range: bytes=N-`
unless `ranges` is False (like olah's local mirror, which answers 200 with the whole file).
It counts the bytes it sends, so tests can assert what a resume cost; `rate` slows bodies down so that a
download lasts long enough to be watched or killed.
"""

import hashlib
import http.server
import threading
import time


class Hub:
    def __init__(self, files, commit="0123456789abcdef0123456789abcdef01234567", ranges=True, etag=None):
        self.files = dict(files)  # {(repo_id, filename): bytes}
        self.commit = commit
        self.ranges = ranges
        self.etag = etag  # override the ETag (None: SHA-256 of the content)
        self.bytes_sent = 0
        self.requests = []
        self.fail_after = None  # close the connection after sending this many bytes of a body
        self.rate = None  # bytes per second for bodies (None: as fast as it goes)
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _lookup(self):
                parts = self.path.split("/resolve/", 1)
                if len(parts) != 2:
                    return None
                repo = parts[0].lstrip("/")
                _revision, _, filename = parts[1].partition("/")
                return hub.files.get((repo, filename))

            def _headers(self, data, status=200, start=0):
                self.send_response(status)
                self.send_header("X-Repo-Commit", hub.commit)
                self.send_header("ETag", '"%s"' % (hub.etag or hashlib.sha256(data).hexdigest()))
                self.send_header("Content-Length", str(len(data) - start))
                if status == 206:
                    self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
                self.end_headers()

            def do_HEAD(self):
                hub.requests.append(("HEAD", self.path, self.headers.get("Range"), self.headers.get("Authorization")))
                data = self._lookup()
                if data is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self._headers(data)

            def do_GET(self):
                rng = self.headers.get("Range")
                hub.requests.append(("GET", self.path, rng, self.headers.get("Authorization")))
                data = self._lookup()
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = 0
                if rng and hub.ranges and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0])
                    self._headers(data, 206, start)
                else:
                    self._headers(data)
                body = data[start:]
                if hub.fail_after is not None:
                    body = body[: hub.fail_after]
                if hub.rate:
                    step = max(int(hub.rate / 20), 1)
                    try:
                        for at in range(0, len(body), step):
                            self.wfile.write(body[at:at + step])
                            hub.bytes_sent += len(body[at:at + step])
                            time.sleep(0.05)
                    except (BrokenPipeError, ConnectionResetError):
                        self.close_connection = True
                        return
                else:
                    self.wfile.write(body)
                    hub.bytes_sent += len(body)
                if hub.fail_after is not None:
                    self.close_connection = True

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
