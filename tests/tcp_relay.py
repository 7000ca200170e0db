"""stdin/stdout <-> one TCP connection: an SSH ProxyCommand that runs inside the LAN namespace.

`nsenter --net=/run/netns/LAN python3 tests/tcp_relay.py HOST PORT`: the
controller (ansible, ssh, pip) stays in this machine's namespaces, and only
this relay touches the lab's LAN (198.51.100.0/24). Not product code.
"""

from __future__ import annotations

import os
import selectors
import socket
import sys


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    sock = socket.create_connection((host, port), timeout=10)
    sock.settimeout(None)
    selector = selectors.DefaultSelector()
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "in")
    selector.register(sock, selectors.EVENT_READ, "sock")
    out = sys.stdout.fileno()
    while True:
        for key, _ in selector.select():
            if key.data == "in":
                data = os.read(key.fd, 65536)
                if not data:
                    sock.shutdown(socket.SHUT_WR)
                    selector.unregister(key.fd)
                    continue
                sock.sendall(data)
            else:
                data = sock.recv(65536)
                if not data:
                    return
                while data:
                    data = data[os.write(out, data) :]


if __name__ == "__main__":
    main()
