"""Configuration of the DICOM side: the `dicom` section of the node's settings."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


def peer_ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A peer's socket address as an IP (a zone index dropped, an IPv4-mapped IPv6 address as
    its IPv4 address); None when it is not an IP address."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip

class Peer(BaseModel):
    """A sender allowed to associate: its calling AE title and the addresses it may come from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ae_title: str = Field(min_length=1, max_length=16)
    hosts: tuple[str, ...] = Field(
        default=("127.0.0.1", "::1"), description="IP addresses or CIDR networks"
    )

    @field_validator("hosts")
    @classmethod
    def _valid_networks(cls, hosts: tuple[str, ...]) -> tuple[str, ...]:
        for host in hosts:
            ipaddress.ip_network(host, strict=False)
        return hosts

    def allows(self, ae_title: str, address: str) -> bool:
        """True when `ae_title` is this peer's and `address` lies in one of its networks."""
        if ae_title.strip() != self.ae_title:
            return False
        ip = peer_ip(address)
        return ip is not None and any(ip in ipaddress.ip_network(h, strict=False)
                                      for h in self.hosts)


class TlsConfig(BaseModel):
    """DICOM over TLS (PS3.15 B.1 / BCP 195): the node's certificate and key, and the CA whose
    client certificates are accepted (required when `require_client_cert`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cert_file: Path
    key_file: Path
    ca_file: Path | None = None
    require_client_cert: bool = True

    @model_validator(mode="after")
    def _ca_for_client_certs(self) -> TlsConfig:
        if self.require_client_cert and self.ca_file is None:
            raise ValueError("require_client_cert needs ca_file (the CA of the peers' certs)")
        return self


class DicomNodeConfig(BaseModel):
    """Listener, access control, spool and study assembly."""

    model_config = ConfigDict(extra="forbid")

    ae_title: str = Field(default="INFERNODE", min_length=1, max_length=16)
    host: str = "127.0.0.1"
    port: int = Field(default=11112, ge=0, le=65535, description="0: any free port")
    require_called_ae: bool = True
    require_known_peers: bool = True
    peers: tuple[Peer, ...] = (Peer(ae_title="INFERNODE_SCU"),)
    tls: TlsConfig | None = Field(
        default=None, description="serve DICOM over TLS (PS3.15 B.1) instead of plain TCP")
    max_associations: int = Field(default=16, ge=1, description="established associations")
    max_pending_associations: int = Field(
        default=32, ge=1,
        description="connections that have not yet sent their A-ASSOCIATE-RQ, all addresses")
    max_pending_per_address: int = Field(
        default=16, ge=1,
        description="such pending connections from one source address (a PACS opening many "
                    "associations at once needs as many)")
    artim_s: float = Field(
        default=5.0, gt=0,
        description="seconds a new connection has to send its A-ASSOCIATE-RQ (ARTIM)")
    pdu_deadline_s: float = Field(
        default=30.0, gt=0, description="seconds a PDU may take from its first byte to its last")
    stop_grace_s: float = Field(
        default=5.0, ge=0,
        description="on shutdown, seconds open associations get to finish before an abort")
    max_inflated_bytes: int = Field(
        default=512 * 1024**2, gt=0,
        description="a Deflated Explicit VR data set inflating beyond this is refused (0xC000)")
    stow_max_body_bytes: int = Field(
        default=4 * 1024**3, gt=0, description="a STOW-RS request body beyond this gets 413")
    protocol_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="WARNING",
        description="level of the DICOM protocol library's logger (pynetdicom); at INFO it "
                    "writes lines for every instance, which costs receive time")
    network_timeout_s: float = Field(default=60.0, gt=0)
    acse_timeout_s: float = Field(default=30.0, gt=0)
    dimse_timeout_s: float = Field(default=60.0, gt=0)
    max_pdu_bytes: int = Field(default=262144, ge=0)
    max_dataset_bytes: int = Field(
        default=1024**3, gt=0,
        description="a C-STORE data set larger than this is aborted (A-ABORT) while it arrives "
                    "(native upper layer: it is written to a spool slot as it arrives)")
    upper_layer: Literal["native", "pynetdicom"] = Field(
        default="native",
        description="the DICOM upper layer of the listener: the node's own (native: one thread "
                    "per association reading PDUs itself, C-ECHO and C-STORE only) or "
                    "pynetdicom's (the fallback)")
    spool_dir: Path = Path("var/spool")
    min_free_bytes: int = Field(
        default=1_000_000_000,
        ge=0,
        description="Below this much free space in the spool every C-STORE is refused (0xA700)",
    )
    spool_drop_cache: bool = Field(
        default=True,
        description="drop a received instance's pages from the page cache once they are on "
                    "disk and read (the spool is written once and read again by the analysis, "
                    "from disk); false keeps them cached")
    spool_warning_free_bytes: int = Field(
        default=5_000_000_000, ge=0,
        description="Below this much free space in the spool the node warns (log line, gauge "
                    "infernode_spool_free_bytes under infernode_spool_warning_free_bytes), "
                    "before min_free_bytes refuses C-STOREs")
    quiet_period_s: float = Field(
        default=10.0, gt=0, description="Default quiet period after which a series is complete"
    )
    assembly_poll_s: float = Field(default=0.5, gt=0)
    acceptor_processes: int = Field(
        default=1, ge=1,
        description="processes accepting DICOM associations on host:port (SO_REUSEPORT; the "
                    "kernel spreads new associations): 1 receives in the node's own process; "
                    "N > 1 adds N-1 child processes that only receive, with the index as the "
                    "meeting point. The association limits apply per process")

    @field_validator("ae_title")
    @classmethod
    def _ae_title_chars(cls, value: str) -> str:
        if value != value.strip() or "\\" in value or not value.isprintable():
            raise ValueError("AE title: printable characters, no backslash, no edge spaces")
        return value
