"""A real MLLP listener on loopback (HL7 v2 minimal lower layer protocol) answering ACKs, for
tests of the MLLP client and of HL7 delivery."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hl7_fhir.hl7v2 import build_ack


@dataclass
class Listener:
    port: int
    mode: str = "AA"  # an ACK code, or "wrong-id", "silent", "close", "chunked"
    received: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


def _serve(server: socket.socket, state: Listener) -> None:
    while not state.stop.is_set():
        try:
            conn, _ = server.accept()
        except TimeoutError:
            continue  # re-check the stop flag
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            data = b""
            while b"\x1c\r" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            if not data.startswith(b"\x0b"):
                continue
            text = data[1:].split(b"\x1c\r")[0].decode("utf-8")
            state.received.append(text)
            if state.mode == "close":
                continue
            if state.mode == "silent":
                state.stop.wait(5)
                continue
            code = "AA" if state.mode in ("wrong-id", "chunked") else state.mode
            ack = build_ack(text, code, datetime(2024, 1, 1, tzinfo=UTC), "ACK1")
            if state.mode == "wrong-id":
                ack = ack.replace("|CTL", "|OTHER", 1)
            framed = b"\x0b" + ack.encode() + b"\x1c\r"
            if state.mode == "chunked":
                for i in range(len(framed)):
                    conn.sendall(framed[i : i + 1])
            else:
                conn.sendall(framed)


@contextmanager
def mllp_listener(mode: str = "AA") -> Iterator[Listener]:
    """Serves on a free port until the block ends; `mode` as in `Listener`."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.05)
    state = Listener(port=server.getsockname()[1], mode=mode)
    thread = threading.Thread(target=_serve, args=(server, state), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.stop.set()
        server.close()
        thread.join(timeout=5)
