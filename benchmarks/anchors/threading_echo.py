"""Anchor: the standard library's socketserver.ThreadingTCPServer running the upper-case echo.

usage: python threading_echo.py PORT
"""

import signal
import socketserver
import sys
import threading


class Upper(socketserver.BaseRequestHandler):
    def handle(self):
        while data := self.request.recv(65536):
            self.request.sendall(data.upper())


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 4096


if __name__ == "__main__":
    server = Server(("127.0.0.1", int(sys.argv[1])), Upper)
    print(f"listening on 127.0.0.1:{server.server_address[1]} model=anchor-threading", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()
