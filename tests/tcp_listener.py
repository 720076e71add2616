"""A TCP listener on loopback that counts connections: the proof that a refused URL never got as far as one."""

import socket
import threading


class Listener:
    """A TCP listener that counts connections and answers each with a fixed HTTP response."""

    def __init__(self, host: str, answer: bytes = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.requests: list[bytes] = []
        self.answer = answer
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.settimeout(2)
            try:
                data = conn.recv(65536)
                self.requests.append(data)
                conn.sendall(self.answer)
            except OSError:
                pass
            finally:
                conn.close()

    def close(self):
        self.sock.close()
