"""Deployment settings: one class, read once from the environment (prefix ``CONSENTCAM_``) or ``.env``."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONSENTCAM_", env_file=".env", extra="ignore")

    data_dir: Path = Path("./data")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy async URL; default: a SQLite file in the data folder"
    )
    evidence_dir: Path | None = Field(default=None, description="default: <data_dir>/evidence")
    secret_key: str | None = Field(
        default=None, description="deployment key; generated into <data_dir>/secret.key on first start if unset"
    )
    public_url: str = "http://127.0.0.1:8080"

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_from: str = "consentcam@localhost"
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_connections: int = Field(default=8, ge=1, description="open SMTP connections kept per worker and reused")
    smtp_idle_seconds: float = Field(default=30.0, ge=0, description="an idle pooled SMTP connection older than this is replaced")
    smtp_helo_name: str | None = Field(default=None, description="the name given in HELO/EHLO; default: this host's FQDN")

    token_hours: float = Field(default=12.0, gt=0)
    login_max_failures: int = Field(default=5, ge=1, description="failures per email or address before slowing")
    login_lockout_seconds: float = Field(default=30.0, ge=0)
    registrations_per_address: int = Field(default=10, ge=1, description="owner sign-ups from one address before slowing")
    link_failures_per_address: int = Field(default=20, ge=1,
                                           description="unknown upload or decline links tried from one address before slowing")
    json_body_limit: int = Field(default=1 << 20, description="largest JSON body accepted, in bytes")
    upload_size_limit: int = Field(default=8 << 30, description="largest clip accepted, in bytes")
    request_window_hours: float = 24.0
    request_area_km2: float = 2.0
    upload_link_days: float = 14.0
    require_approval: bool = True
    tile_url: str = Field(
        default="https://tile.openstreetmap.org/{z}/{x}/{y}.png",
        description="street map tiles for the web UI, {z}/{x}/{y} (and optional {s}); empty: no tiles, the maps show "
                    "a plain background with jurisdiction outlines (air-gapped sites)",
    )
    tile_attribution: str = Field(default="© OpenStreetMap contributors", max_length=500)
    trusted_proxies: str = Field(
        default="",
        description="comma-separated addresses or networks of the one reverse proxy in front (for example 127.0.0.1); "
                    "when set, X-Forwarded-For, -Proto and -Host from it are believed, so client addresses, HTTPS and "
                    "Secure cookies are right behind nginx. Then every connection must come through it: one from "
                    "elsewhere, or with malformed forwarding headers, gets 400",
    )
    probe_allowed_networks: str = Field(
        default="",
        description="comma-separated networks the platform may reach when an owner probes a camera although they "
                    "are not public (a district's NVR segment); cameras elsewhere on private networks are probed by "
                    "their edge relay",
    )
    webhook_allowed_networks: str = Field(
        default="",
        description="comma-separated networks that owners' webhooks may reach although they are not public (an "
                    "agency receiver on the intranet); everything else private, loopback or link-local is refused",
    )
    run_jobs_in_process: bool = Field(default=True, description="the embedded default runs the outbox worker inside `serve`")
    worker_concurrency: int = Field(default=8, ge=1, description="jobs one outbox worker runs at the same time")
    load_entry_point_plugins: bool = True
    # live feeds (tier 2)
    emergency_default_minutes: float = Field(default=60.0, gt=0, description="an emergency's duration when none is given")
    emergency_max_minutes: float = Field(default=60.0, gt=0, description="the longest an emergency may be declared for")
    live_session_minutes: float = Field(default=15.0, gt=0, description="a live session's hard end, and each renewal's")
    live_statement_seconds: float = Field(
        default=30.0, gt=0, description="how long an edge agent may act on a signed live policy without hearing again")
    edge_pairing_code_minutes: float = Field(default=15.0, gt=0)
    # the scale path: several web processes and workers reach edge agents held by another process
    broker_url: str | None = Field(
        default=None,
        description="NATS server(s) the processes of one deployment share, e.g. nats://127.0.0.1:4222 (several "
                    "comma-separated for a cluster; credentials in the URL; tls:// for TLS). Unset: the embedded "
                    "single-process default, where an edge agent is reached only by the process holding its socket",
    )
    broker_subject_prefix: str = Field(
        default="consentcam", description="first tokens of every subject this deployment uses, so that two deployments "
                                          "(or a staging copy) may share one broker")
    broker_timeout_seconds: float = Field(
        default=2.0, gt=0, description="how long a process waits for another to answer through the broker before "
                                       "reporting it unreachable (a viewer gets 503, a command counts as not delivered)")

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("trusted_proxies", "webhook_allowed_networks", "probe_allowed_networks")
    @classmethod
    def _networks(cls, value: str, info: ValidationInfo) -> str:
        import ipaddress

        for part in (p.strip() for p in value.split(",")):
            if part:
                try:
                    ipaddress.ip_network(part, strict=False)
                except ValueError:
                    raise ValueError(f"{info.field_name}: {part!r} is not an IP address or network") from None
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str | None) -> str | None:
        value = (value or "").strip()
        if not value:
            return None
        for server in value.split(","):
            if not re.match(r"^(nats|tls)://[^\s/]+/?$", server.strip()):
                raise ValueError(f"broker_url: {server.strip()!r} is not a NATS URL (nats://host:4222 or tls://host:4222)")
        return value

    @field_validator("broker_subject_prefix")
    @classmethod
    def _subject_prefix(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", value):
            raise ValueError("broker_subject_prefix is one or more dot-separated tokens of letters, digits, '_' and '-'")
        return value

    @field_validator("tile_url")
    @classmethod
    def _tile_url(cls, value: str) -> str:
        value = value.strip()
        if value and not re.match(r"^https?://[^/\s'\";]+/\S*$", value):
            raise ValueError("tile_url is an http(s) URL with {z}/{x}/{y}, or empty for no tiles")
        return value

    @property
    def proxy_hops(self) -> list[list[str]]:
        """``trusted_proxies`` in aiohttp-remotes' form: one hop, the listed addresses."""
        hop = [part.strip() for part in self.trusted_proxies.split(",") if part.strip()]
        return [hop] if hop else []

    @property
    def https(self) -> bool:
        """The deployment is served over HTTPS (its public address says so), whatever hop terminates TLS."""
        return self.public_url.startswith("https://")

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'consentcam.sqlite3').resolve()}"

    @property
    def resolved_evidence_dir(self) -> Path:
        return self.evidence_dir or self.data_dir / "evidence"

    def deployment_key(self) -> bytes:
        """The deployment secret, created once per data folder, never a constant in code."""
        if self.secret_key:
            return self.secret_key.encode()
        path = self.data_dir / "secret.key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, secrets.token_hex(32).encode())
            finally:
                os.close(fd)
        return path.read_bytes().strip()
