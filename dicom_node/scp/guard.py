"""Bounds on what a TCP peer can hold before and while it associates (PS3.8 9.1.4, 9.3.1).

Before a peer has sent its A-ASSOCIATE-RQ the node knows only its address, so:

- a connection from an address no configured peer may use is closed at accept, before a thread or
  an association slot is spent on it (with `require_known_peers`);
- a connection that has not sent its A-ASSOCIATE-RQ is *pending*: pending connections have their
  own small pool (`max_pending_associations`, at most `max_pending_per_address` from one address),
  separate from the `max_associations` established ones, so idle connections cannot lock
  scanners out; each must send its request within `artim_s` (the ARTIM timer, PS3.8 9.1.4);
- every PDU must arrive whole within `pdu_deadline_s` of its first byte, and no PDU may exceed
  the negotiated maximum (`max_pdu_bytes`, what the node announced in its Maximum Length item,
  PS3.8 D.1) or, for association PDUs, `MAX_ASSOCIATION_PDU`; a peer breaking either gets an
  A-ABORT and the connection is closed.

`ConnectionGuard` serves both upper layers. The rest of this module fits these bounds (and a
faster message loop) into pynetdicom's layer; the native layer (`scp.upper`) reads PDUs itself
and enforces them there.
"""

from __future__ import annotations

import ipaddress
import queue
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from pynetdicom.association import Association
from pynetdicom.transport import AssociationSocket, ThreadedAssociationServer

from dicom_node.config import DicomNodeConfig, peer_ip
from dicom_node.metrics import IngestMetrics

MAX_ASSOCIATION_PDU = 1 << 20
"""Largest A-ASSOCIATE-RQ / A-RELEASE / A-ABORT PDU read (real requests are a few KiB)."""
_P_DATA_TF = 0x04
_PDU_HEADER = 6
# A-ABORT PDU (PS3.8 9.3.8): source 2 = service-provider, reason 6 = invalid PDU parameter value.
_ABORT_INVALID_PDU = bytes((0x07, 0, 0, 0, 0, 4, 0, 0, 0x02, 0x06))
# PDV item header (4-byte length) + message control header: the PDU may exceed the maximum
# length by that much (PS3.8 9.3.5: the maximum bounds the PDV list of a P-DATA-TF).
_PDV_OVERHEAD = 6


class ConnectionGuard:
    """Admits connections by address and keeps the count of pending ones."""

    def __init__(self, config: DicomNodeConfig, metrics: IngestMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics
        self._networks = tuple(
            ipaddress.ip_network(host, strict=False) for p in config.peers for host in p.hosts
        )
        self._lock = threading.Lock()
        self._pending: Counter[str] = Counter()
        self._by_socket: dict[int, str] = {}
        self._by_assoc: dict[int, str] = {}

    def address_known(self, address: str) -> bool:
        """True when some configured peer may connect from `address` (or any may)."""
        if not self.config.require_known_peers:
            return True
        return self._listed(address)

    def _listed(self, address: str) -> bool:
        """True when `address` is one of the configured peers' hosts."""
        ip = peer_ip(address)
        return ip is not None and any(ip in net for net in self._networks)

    def admit(self, sock: object, address: str) -> bool:
        """Called at accept: True keeps the connection as pending, False closes it. Addresses
        that no configured peer lists (only admitted with `require_known_peers` off) share
        the pending pool less a quarter kept for the listed ones, so that strangers from many
        addresses cannot lock the configured scanners out either."""
        cfg = self.config
        pool = cfg.max_pending_associations
        # with `require_known_peers`, `address_known` let only listed addresses this far
        if not cfg.require_known_peers and not self._listed(address):
            pool -= max(1, pool // 4) if self._networks and pool > 1 else 0
        with self._lock:
            full = (sum(self._pending.values()) >= pool
                    or self._pending[address] >= cfg.max_pending_per_address)
            if not full:
                self._pending[address] += 1
                self._by_socket[id(sock)] = address
        if full:
            self.refused("pending_limit")
        return not full

    def opened(self, assoc: object, sock: object) -> None:
        """The association thread (of either upper layer) took over the connection accepted as
        `sock`."""
        with self._lock:
            address = self._by_socket.pop(id(sock), None)
            if address is not None:
                self._by_assoc[id(assoc)] = address

    def settle(self, assoc: object) -> None:
        """The connection sent its A-ASSOCIATE-RQ or closed: it no longer counts as pending."""
        with self._lock:
            address = self._by_assoc.pop(id(assoc), None)
            if address is not None:
                self._pending[address] -= 1
                if self._pending[address] <= 0:
                    del self._pending[address]

    def pending(self) -> int:
        with self._lock:
            return sum(self._pending.values())

    def refused(self, label: str) -> None:
        """Counts a rejected association or a connection closed at accept, by reason."""
        if self.metrics is not None:
            self.metrics.rejections.labels(reason=label).inc()


class GuardedServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with the guard asked at accept.

    The source address is checked before anything else, TLS included; the TLS handshake is left
    to the association's own thread (first read), under the PDU deadline, so a silent peer never
    holds the accept loop.
    """

    guard: ConnectionGuard
    request_queue_size = 128
    """Listen backlog (socketserver's default is 5): a burst of connections, refused ones
    included, must not make senders wait for a SYN retransmission."""

    allow_reuse_port = False
    """True when several acceptor processes listen on one port (SO_REUSEPORT): each sets it,
    and the kernel spreads new connections among them."""

    def server_bind(self) -> None:
        # pynetdicom's server_bind does not look at socketserver's allow_reuse_port.
        if self.allow_reuse_port:
            assert self.socket is not None
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    def get_request(self) -> tuple[socket.socket, Any]:
        assert self.socket is not None
        client, address = self.socket.accept()
        if not self.guard.address_known(str(address[0])):
            self.guard.refused("source_address_at_connect")
            _close(client)
            raise ConnectionRefusedError("source address not allowed")
        if self.ssl_context:
            client = self.ssl_context.wrap_socket(client, server_side=True,
                                                  do_handshake_on_connect=False)
        return client, address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return self.guard.admit(request, str(client_address[0]))


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class _PduReader:
    """Replaces an AssociationSocket's `recv`: pynetdicom reads each PDU as its 6-byte header and
    then its body, so the deadline starts with the header and covers the body."""

    def __init__(self, assoc_socket: AssociationSocket, *, deadline_s: float,
                 max_pdu: int) -> None:
        self.assoc_socket = assoc_socket
        self.plain_recv: Callable[[int], bytearray] = assoc_socket.recv
        self.deadline_s = deadline_s
        self.max_pdu = max_pdu
        self._deadline = 0.0
        self._header = b""

    def __call__(self, nr_bytes: int) -> bytearray:
        raw = self.assoc_socket.socket
        if raw is None:
            return bytearray()
        if nr_bytes == _PDU_HEADER and not self._expects_body():
            self._deadline = time.monotonic() + self.deadline_s
            data = self._read(raw, nr_bytes)
            self._header = bytes(data)
            return data
        header, self._header = self._header, b""
        if len(header) == _PDU_HEADER:
            pdu_type, _, length = struct.unpack(">BBL", header)
            limit = (self.max_pdu + _PDV_OVERHEAD if pdu_type == _P_DATA_TF and self.max_pdu
                     else MAX_ASSOCIATION_PDU if pdu_type != _P_DATA_TF else 0)
            if limit and length > limit:
                self._abort(raw)
                raise ConnectionAbortedError("PDU longer than the negotiated maximum")
        return self._read(raw, nr_bytes)

    def _read(self, raw: socket.socket, nr_bytes: int) -> bytearray:
        """Reads `nr_bytes` before the deadline; raises TimeoutError (pynetdicom then closes the
        connection) when the peer is too slow."""
        out = bytearray()
        previous = raw.gettimeout()
        try:
            while len(out) < nr_bytes:
                left = self._deadline - time.monotonic()
                if left <= 0:
                    self._abort(raw)
                    raise TimeoutError("PDU not received whole within the deadline")
                raw.settimeout(left)
                try:
                    chunk = raw.recv(min(nr_bytes - len(out), 1 << 16))
                except TimeoutError:
                    continue  # the loop's deadline check aborts
                if not chunk:
                    break
                out.extend(chunk)
        finally:
            if self.assoc_socket.socket is not None:
                raw.settimeout(previous)
        return out

    def _expects_body(self) -> bool:
        """True when the last read was a PDU header whose body is still to come."""
        if len(self._header) != _PDU_HEADER:
            return False
        return struct.unpack(">BBL", self._header)[2] > 0

    @staticmethod
    def _abort(raw: socket.socket) -> None:
        try:
            raw.settimeout(1.0)
            raw.sendall(_ABORT_INVALID_PDU)
        except OSError:
            pass


DUL_POLL_S = 0.0002
"""How long pynetdicom's DUL thread of an association sleeps when it found nothing to do, with
one association open (pynetdicom's default is 1 ms). A sender waits for each C-STORE response
before it sends the next request, and each instance crosses that sleep twice (the response out,
the next request in): 1 ms polling cost one association about 1.5 ms per instance. Every open
association polls, so the interval grows with their number (`poll_interval`): 16 associations
polling every 0.2 ms took CPU and GIL time from the stores themselves."""
DUL_POLL_MAX_S = 0.001
"""The interval from five open associations on: pynetdicom's default."""


def poll_interval(open_associations: int) -> float:
    """The DUL polling interval for every association while `open_associations` are open:
    about 5000 wake-ups a second in all, at most `DUL_POLL_MAX_S` each."""
    return min(DUL_POLL_MAX_S, DUL_POLL_S * max(1, open_associations))


MESSAGE_WAIT_S = 0.005
"""How long an association's own thread waits for the next decoded DIMSE message each time it
looks. pynetdicom's acceptor loop sleeps 1 ms between non-blocking looks at its message queue, so
a C-STORE request that is complete waits on average half of that sleep (more on a loaded machine)
before the handler starts, and a sender waits for every response. Looking with a short wait
instead takes the message the moment it is queued; the loop's other checks (release, abort,
idle timeout) still run at least every `MESSAGE_WAIT_S` + 1 ms."""


def wait_for_messages(assoc: Association, wait_s: float = MESSAGE_WAIT_S) -> None:
    """Makes the acceptor loop's non-blocking look at the DIMSE message queue wait up to
    `wait_s` for a message (a blocking look keeps its own timeout)."""
    dimse = assoc.dimse
    messages = dimse.msg_queue
    original = dimse.get_msg

    def get_msg(block: bool = False) -> Any:
        if block:
            return original(block=True)
        try:
            return messages.get(timeout=wait_s)
        except queue.Empty:
            return None, None

    dimse.get_msg = get_msg  # type: ignore[method-assign]


def bound_connection(assoc: Association, config: DicomNodeConfig,
                     guard: ConnectionGuard | None = None) -> None:
    """Shortens the ARTIM timer, sets the DUL polling interval of every open association for
    their new number, lets the association's thread wait for messages instead of polling
    (`wait_for_messages`), and puts the PDU deadline and size limit on a new connection."""
    assoc.dul.artim_timer.timeout = config.artim_s
    wait_for_messages(assoc)
    acceptors = [a for a in assoc.ae.active_associations if a.is_acceptor and a is not assoc]
    interval = poll_interval(len(acceptors) + 1)
    for each in (*acceptors, assoc):
        each.dul._run_loop_delay = interval
    sock = assoc.dul.socket
    if sock is not None:
        if guard is not None:
            guard.opened(assoc, sock.socket)
        reader = _PduReader(sock, deadline_s=config.pdu_deadline_s,
                            max_pdu=config.max_pdu_bytes)
        sock.recv = reader  # type: ignore[method-assign]
