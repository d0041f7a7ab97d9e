"""The node's one typed Settings object: a YAML or TOML file, overridden by environment variables.

Environment variables use the prefix `INFERNODE_` and `__` between section and key, e.g.
`INFERNODE_DICOM__PORT=104` or `INFERNODE_DATABASE__URL=postgresql+psycopg://...`. Each package
receives only its own section.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from dicom_node.config import DicomNodeConfig
from hl7_fhir.config import ReportingConfig
from inference.config import InferenceConfig
from infernode.console.config import ConsoleConfig
from workers.config import WorkersConfig
from workers.monitoring.config import MonitoringConfig


class DatabaseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        default="sqlite:///var/infernode.db",
        description="SQLAlchemy URL: sqlite:///PATH (default) or postgresql+psycopg://...",
    )


class WebConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8042, ge=0, le=65535)
    stow_tokens: tuple[str, ...] = Field(
        default=(),
        description="bearer tokens accepted by STOW-RS ingest (/dicom-web/studies); "
        "none configured: STOW-RS ingest is off",
    )
    fhir_tokens: tuple[str, ...] = Field(
        default=(),
        description="bearer tokens accepted by the read-only FHIR facade (/fhir); "
        "none configured: only /fhir/metadata answers",
    )
    api_tokens: tuple[str, ...] = Field(
        default=(),
        description="bearer tokens for /metrics, /api/*, /docs, /openapi.json, /redoc; required "
        "when `host` is not a loopback address (none configured then: those paths answer 401)",
    )
    tls_certfile: Path | None = Field(
        default=None, description="PEM certificate (chain) of the web port; with the key: HTTPS")
    tls_keyfile: Path | None = Field(default=None, description="PEM private key of tls_certfile")

    @model_validator(mode="after")
    def _tls_pair(self) -> WebConfig:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("tls_certfile and tls_keyfile go together")
        return self


class HealthConfig(BaseModel):
    """Thresholds of `/health/ready` (docs/OPERATIONS.md)."""

    model_config = ConfigDict(extra="forbid")

    spool_min_free_bytes: int | None = Field(
        default=None, ge=0,
        description="free bytes the spool's filesystem must keep for the node to be ready; "
        "None: dicom.min_free_bytes (where C-STORE starts refusing)")
    max_delivery_dead_letters: int = Field(
        default=100, ge=0, description="dead-lettered deliveries tolerated before not ready")
    dead_letter_window_s: float | None = Field(
        default=86400.0, gt=0, description="count the deliveries that went dead in this many "
        "seconds (a dead letter left for good does not keep the node unready for ever); "
        "None: all of them")
    max_oldest_queued_s: float = Field(
        default=3600.0, gt=0, description="age of the oldest queued job tolerated before not ready")
    probe_timeout_s: float = Field(
        default=2.0, gt=0, description="how long the broker and worker probes may wait")
    worker_probe_interval_s: float = Field(
        default=10.0, gt=0, description="how often Celery workers are asked for their queues "
        "(in the background; /health/ready answers the last result)")


class SyslogConfig(BaseModel):
    """The audit repository: DICOM PS3.15 A.5 audit messages over syslog (RFC 5424), TCP with
    octet counting (RFC 6587), TLS (RFC 5425) when `tls`."""

    model_config = ConfigDict(extra="forbid")

    host: str
    port: int = Field(default=6514, ge=1, le=65535)
    tls: bool = True
    ca_file: Path | None = Field(default=None, description="CA of the repository's certificate "
                                 "(default: the system's trust store)")
    cert_file: Path | None = Field(default=None, description="client certificate, if required")
    key_file: Path | None = None
    app_name: str = "infernode"
    enterprise_site_id: str | None = Field(
        default=None, description="AuditEnterpriseSiteID of the messages (the hospital)")
    batch: int = Field(default=100, ge=1)
    poll_s: float = Field(default=2.0, gt=0, description="how often new events are looked for")
    retry_max_s: float = Field(default=300.0, gt=0,
                               description="longest wait between tries while it is down")
    timeout_s: float = Field(default=10.0, gt=0)


class AuditConfig(BaseModel):
    """The audit trail (docs/OPERATIONS.md)."""

    model_config = ConfigDict(extra="forbid")

    queue_size: int = Field(default=10000, ge=100,
                            description="events waiting to be written, at most")
    poll_s: float = Field(default=2.0, gt=0,
                          description="how often ended jobs and deliveries are looked for")
    syslog: SyslogConfig | None = Field(
        default=None, description="export to an audit repository; none: kept in the table only")


class Settings(BaseSettings):
    """Everything configurable, by section."""

    model_config = SettingsConfigDict(
        env_prefix="INFERNODE_", env_nested_delimiter="__", extra="forbid"
    )

    data_dir: Path = Path("var")
    log_level: str = "INFO"
    dicom: DicomNodeConfig = DicomNodeConfig()
    database: DatabaseConfig = DatabaseConfig()
    web: WebConfig = WebConfig()
    workers: WorkersConfig = WorkersConfig()
    inference: InferenceConfig = InferenceConfig()
    reporting: ReportingConfig = ReportingConfig()
    console: ConsoleConfig = ConsoleConfig()
    health: HealthConfig = HealthConfig()
    audit: AuditConfig = AuditConfig()
    monitoring: MonitoringConfig = MonitoringConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values arrive as init arguments; the environment overrides them.
        return (env_settings, init_settings)


class ConfigError(Exception):
    """A configuration file that cannot be used; `problems` lists (key, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{k}: {m}" for k, m in problems))
        self.problems = problems


def read_config_file(path: Path) -> dict[str, Any]:
    """The mapping in a .yaml/.yml or .toml file. Raises ConfigError when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([("<file>", f"cannot read {path}: {exc.strerror}")]) from exc
    try:
        if path.suffix.lower() == ".toml":
            data: Any = tomllib.loads(text)
        else:
            data = yaml.safe_load(text) or {}
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError([("<file>", f"not valid {path.suffix.lstrip('.')}: {exc}")]) from exc
    if not isinstance(data, dict):
        raise ConfigError([("<file>", "the top level must be a mapping of sections")])
    return data


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Settings from `path` (optional) + environment + explicit `overrides` (highest).

    Raises ConfigError listing every problem with its dotted key.
    """
    data = read_config_file(path) if path is not None else {}
    try:
        settings = Settings(**data)
        if overrides:
            merged = settings.model_dump()
            _deep_update(merged, overrides)
            settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(
            [(".".join(str(p) for p in err["loc"]) or "<root>", err["msg"]) for err in exc.errors()]
        ) from exc
    return settings


def _deep_update(target: dict[str, Any], changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value
