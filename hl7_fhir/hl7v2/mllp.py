"""MLLP client: one HL7 v2 message over TCP, then its ACK (HL7 v2.5.1 Appendix C, MLLP
release 2: start block 0x0B, payload, end block 0x1C 0x0D), optionally inside TLS (1.2 or newer;
`client_tls_context`, and `server_tls_context` for the listener).

Failures map onto the two delivery error types: no connection, timeouts, a broken frame and
AE/CE acknowledgments are transient; AR/CR (the receiver rejects the message itself) are
permanent.
"""

from __future__ import annotations

import socket
import ssl
import time

from hl7_fhir.errors import PermanentDeliveryError, TransientDeliveryError
from hl7_fhir.hl7v2.ack import ACCEPT, ERROR, REJECT, Ack, parse_ack

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
MAX_ACK_BYTES = 1 << 20


def client_tls_context(ca_file: str, cert_file: str | None = None,
                       key_file: str | None = None) -> ssl.SSLContext:
    """A client context that trusts only `ca_file`, checks the receiver's name (or IP address)
    against its certificate, and presents the node's certificate when one is given (a receiver
    that asks for client certificates)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    return context


def server_tls_context(cert_file: str, key_file: str,
                       client_ca_file: str | None = None) -> ssl.SSLContext:
    """A listener context with the node's certificate; with `client_ca_file`, a sender must
    present a certificate issued by that CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    if client_ca_file:
        context.load_verify_locations(cafile=client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


def frame(message: str) -> bytes:
    """Wrap an ER7 message (segments ended by CR) in an MLLP block, UTF-8 encoded (MSH-18)."""
    return START_BLOCK + message.encode("utf-8") + END_BLOCK


def _read_frame(sock: socket.socket, deadline: float) -> bytes:
    buffer = b""
    while END_BLOCK not in buffer:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            raise TransientDeliveryError("MLLP peer closed the connection before the ACK")
        buffer += chunk
        if len(buffer) > MAX_ACK_BYTES:
            raise TransientDeliveryError("MLLP ACK larger than 1 MiB")
    body = buffer.split(END_BLOCK, 1)[0]
    start = body.find(START_BLOCK)
    if start < 0:
        raise TransientDeliveryError("MLLP frame without start block")
    return body[start + 1 :]


def send_mllp(
    message: str,
    host: str,
    port: int,
    *,
    timeout_s: float = 30.0,
    ssl_context: ssl.SSLContext | None = None,
) -> Ack:
    """Send `message` and wait for its ACK, all within `timeout_s` seconds.

    Returns the ACK when it accepts (AA/CA) the message with our MSH-10. Raises
    `TransientDeliveryError` (connection refused or reset, timeout, malformed or mismatched ACK,
    AE/CE) or `PermanentDeliveryError` (AR/CR).
    """
    control_id = _control_id(message)
    deadline = time.monotonic() + timeout_s
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as raw:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if ssl_context is not None:
                with ssl_context.wrap_socket(raw, server_hostname=host) as tls:
                    payload = _exchange(tls, message, deadline)
            else:
                payload = _exchange(raw, message, deadline)
    except TimeoutError as exc:
        raise TransientDeliveryError(f"MLLP timed out after {timeout_s:g} s") from exc
    except ssl.SSLError as exc:
        raise TransientDeliveryError(f"MLLP TLS failure: {exc.reason}") from exc
    except OSError as exc:
        raise TransientDeliveryError(f"MLLP connection failed: {type(exc).__name__}") from exc

    try:
        ack = parse_ack(payload.decode("utf-8", errors="replace"))
    except ValueError as exc:
        raise TransientDeliveryError(f"MLLP reply is not an ACK: {exc}") from exc
    if ack.control_id != control_id:
        raise TransientDeliveryError("MLLP ACK acknowledges another message (MSA-2 mismatch)")
    detail = f" (ERR-3 {ack.error_code})" if ack.error_code else ""
    if ack.code in ACCEPT:
        return ack
    if ack.code in REJECT:
        raise PermanentDeliveryError(f"HL7 receiver rejected the message: {ack.code}{detail}")
    if ack.code in ERROR:
        raise TransientDeliveryError(f"HL7 receiver failed to process: {ack.code}{detail}")
    raise TransientDeliveryError("MLLP ACK with an unknown acknowledgment code")


def _exchange(sock: socket.socket, message: str, deadline: float) -> bytes:
    sock.sendall(frame(message))
    return _read_frame(sock, deadline)


def _control_id(message: str) -> str:
    msh = message.replace("\n", "\r").split("\r")[0]
    if not msh.startswith("MSH") or len(msh) < 8:
        raise ValueError("message has no MSH segment")
    fields = msh.split(msh[3])
    if len(fields) < 10 or not fields[9]:
        raise ValueError("message has no MSH-10 control id")
    return fields[9]
