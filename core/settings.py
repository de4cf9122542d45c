"""The one settings class shared by every service, read from `PILOTS_*` environment variables.

Every field is documented, with its default, in `pilots.env.example` at the repository root; a
unit test keeps the two in step. Construction validates only: nothing here connects anywhere.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigError

#: In PILOTS_MQTT_URL's user name, replaced by ingest's client id (PILOTS_MQTT_CLIENT_ID).
CLIENT_ID_LOGIN = "{client_id}"

#: Secrets that ship in examples; refused outside development.
PLACEHOLDER_SECRETS = frozenset({"changeme", "change-me", "password", "secret", "admin", "pilots"})

DEFAULT_MQTT_PORT = 1883
DEFAULT_MQTTS_PORT = 8883


@dataclass(frozen=True, slots=True)
class MqttTarget:
    """Where and how to reach an MQTT broker, parsed from `PILOTS_MQTT_URL`."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    #: PEM file of the CA(s) that signed the broker's certificate; None: the system's CAs.
    ca_file: str | None = None

    @classmethod
    def parse(cls, url: str) -> MqttTarget:
        """Parse `mqtt://user:pass@host:port` (or `mqtts://` for TLS)."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ConfigError(
                f"PILOTS_MQTT_URL: scheme must be mqtt:// or mqtts://, got {parts.scheme!r}"
            )
        if not parts.hostname:
            raise ConfigError(f"PILOTS_MQTT_URL: no host in {url!r}")
        tls = parts.scheme in ("mqtts", "ssl")
        try:
            port = parts.port or (DEFAULT_MQTTS_PORT if tls else DEFAULT_MQTT_PORT)
        except ValueError as exc:
            raise ConfigError(f"PILOTS_MQTT_URL: bad port in {url!r}") from exc
        return cls(
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
        )

    def __str__(self) -> str:
        """Show the target without its password, for logs."""
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"


class Settings(BaseSettings):
    """Configuration of every `pilots` service; see `pilots.env.example` for each key."""

    model_config = SettingsConfigDict(
        env_prefix="PILOTS_", env_file=".env", extra="ignore", frozen=True
    )

    env: Literal["development", "production"] = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    data_dir: Path = Path("var")
    registry: Path | None = None

    mqtt_url: str | None = None
    mqtt_ca_file: Path | None = None
    mqtt_client_id: str = "pilots-ingest"
    mqtt_protocol: Literal["3.1.1", "5"] = "3.1.1"
    mqtt_receive_maximum: int = Field(default=1000, ge=1, le=65535)
    mqtt_session_expiry_s: int = Field(default=7 * 86_400, ge=0)
    mqtt_shared_group: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]+$")
    mqtt_keepalive_s: int = Field(default=30, ge=5)

    store: Literal["influx", "embedded"] | None = None
    influx_url: str | None = None
    influx_database: str = "pilots"
    influx_token: SecretStr | None = None
    influx_username: str | None = None
    influx_password: SecretStr | None = None
    influx_org: str = "-"
    influx_write_api: Literal["auto", "v1", "v2"] = "auto"
    influx_timeout_s: float = Field(default=10.0, gt=0)

    ingest_routes: dict[str, str] = Field(
        default_factory=lambda: {
            "pilots/+/+/up": "plain",
            "pilots/+/+/senml": "senml",
            "application/+/device/+/event/up": "chirpstack",
            "v3/+/devices/+/up": "tts",
        }
    )
    ingest_commit_max: int = Field(default=5_000, ge=1)
    ingest_writer: Literal["process", "thread"] = "process"
    ingest_write_batch_messages: int = Field(default=20_000, ge=1)
    ingest_write_batch_bytes: int = Field(default=4 << 20, ge=1024)
    ingest_spool_max_bytes: int = Field(default=1 << 30, ge=1 << 20)
    ingest_max_payload_bytes: int = Field(default=262_144, ge=64)
    ingest_max_future_s: int = Field(default=600, ge=0)
    ingest_max_age_days: int = Field(default=3650, ge=1)
    ingest_dedupe_window_s: int = Field(default=3600, ge=0)
    ingest_http_host: str = "127.0.0.1"
    ingest_http_port: int = Field(default=9108, ge=0, le=65535)
    ingest_unhealthy_after_s: float = Field(default=60.0, gt=0)
    ingest_stop_timeout_s: float = Field(default=30.0, ge=0)
    ingest_rollup_every_s: float = Field(default=30.0, gt=0)
    ingest_adopt_after_s: float = Field(default=30.0, ge=0)

    quarantine_keep_bytes: int = Field(default=16_384, ge=0, le=32_768)
    quarantine_max_entries: int = Field(default=100_000, ge=1)
    quarantine_max_per_device: int = Field(default=2_000, ge=1)
    quarantine_max_bytes: int = Field(default=128 << 20, ge=1 << 16)
    quarantine_max_age_days: float = Field(default=30.0, gt=0)

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    api_workers: int = Field(default=1, ge=1, le=64)
    api_max_points: int = Field(default=100_000, ge=1)
    api_max_range_days: int = Field(default=400, ge=1)
    api_raw_max_hours: float = Field(default=48.0, gt=0)
    api_cache_days: int = Field(default=35, ge=1)
    api_answers_kept: int = Field(default=256, ge=0)
    api_export_max_rows: int = Field(default=5_000_000, ge=1)
    api_max_scan_readings: int = Field(default=250_000, ge=1)
    api_answers_max_bytes: int = Field(default=32 << 20, ge=0)
    api_max_concurrent_scans: int = Field(default=2, ge=1, le=64)
    api_scan_wait_s: float = Field(default=5.0, ge=0, le=60)
    api_max_streams: int = Field(default=64, ge=1, le=10_000)
    api_max_streams_per_token: int = Field(default=4, ge=1, le=1_000)
    api_public_rate: str = "60/minute;1000/hour"
    api_public_rate_total: str = "600/minute;10000/hour"
    api_public_max_scans: int = Field(default=1, ge=1, le=64)
    # The dashboard map's tile layer: URL template with {z} {x} {y}, then optionally the
    # attribution; unset: no tiles (checked at start-up by api.dashboard.map_tiles).
    api_map_tiles: str | None = None

    alert_dashboard_url: str = "http://127.0.0.1:8000/"
    alert_webhook_url: str | None = None
    alert_webhook_secret: SecretStr | None = None
    alert_mqtt: bool = False
    alert_mqtt_client_id: str = Field(default="pilots-alerts", pattern=r"^[A-Za-z0-9_.-]+$")
    alert_smtp_host: str | None = None
    alert_smtp_port: int = Field(default=587, ge=1, le=65535)
    alert_smtp_starttls: bool = True
    alert_smtp_ca_file: Path | None = None
    alert_smtp_user: str | None = None
    alert_smtp_password: SecretStr | None = None
    alert_smtp_from: str | None = None
    alert_smtp_to: str | None = None
    alert_send_timeout_s: float = Field(default=10.0, gt=0, le=300)
    alert_outbox_max: int = Field(default=10_000, ge=1)
    alert_outbox_max_age_s: float = Field(default=259_200.0, gt=0)
    alert_retry_base_s: float = Field(default=1.0, gt=0)
    alert_retry_max_s: float = Field(default=60.0, gt=0)
    alert_rules: Path | None = None
    alert_history_days: int = Field(default=365, ge=1, le=36_500)
    alert_history_max: int = Field(default=100_000, ge=1)
    alert_session_id: str = Field(default="pilots-alerts-eval", pattern=r"^[A-Za-z0-9_.-]+$")
    alert_eval_every_s: float = Field(default=0.1, gt=0, le=10)
    alert_silence_every_s: float = Field(default=10.0, gt=0, le=3600)
    alert_late_after_s: float = Field(default=3600.0, ge=0)
    alert_reload_every_s: float = Field(default=2.0, gt=0, le=3600)
    alert_checkpoint_every_s: float = Field(default=5.0, gt=0, le=60)
    alert_health_every_s: float = Field(default=15.0, gt=0, le=3600)

    demo_mqtt_port: int = Field(default=1883, ge=0, le=65535)
    demo_backfill_hours: float = Field(default=72.0, ge=0)

    @field_validator("mqtt_ca_file", "alert_smtp_ca_file")
    @classmethod
    def _ca_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no CA file at {value}")
        return value

    @field_validator("api_public_rate", "api_public_rate_total")
    @classmethod
    def _rate(cls, value: str) -> str:
        from limits import parse_many

        try:
            if not parse_many(value):
                raise ValueError("empty")
        except ValueError as exc:
            raise ValueError(
                f"{value!r} is not a rate such as 60/minute or 60/minute;1000/hour"
            ) from exc
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url_parses(cls, value: str | None) -> str | None:
        if value is not None:
            MqttTarget.parse(value)
        return value

    @model_validator(mode="before")
    @classmethod
    def _influx_login_out_of_the_url(cls, data: object) -> object:
        """A user and password written into `PILOTS_INFLUX_URL` become the login settings.

        The HTTP client ignores credentials in a URL, and a URL is logged and shown by
        /health/details: kept there, a password would leak and never be used.
        """
        if not isinstance(data, dict) or not isinstance(data.get("influx_url"), str):
            return data
        parts = urlsplit(data["influx_url"])
        if parts.username is None:
            return data
        if data.get("influx_username") or data.get("influx_password"):
            raise ValueError(
                "PILOTS_INFLUX_URL: a user in the URL and PILOTS_INFLUX_USERNAME/PASSWORD as "
                "well: give the login once, in PILOTS_INFLUX_USERNAME and PILOTS_INFLUX_PASSWORD"
            )
        host = parts.netloc.rpartition("@")[2]
        login = {"influx_username": unquote(parts.username)}
        if parts.password is not None:
            login["influx_password"] = unquote(parts.password)
        return {**data, **login, "influx_url": parts._replace(netloc=host).geturl()}

    @field_validator("influx_url")
    @classmethod
    def _influx_url_is_http(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        try:
            parts.port  # noqa: B018  (parsing the port is the check: it raises when invalid)
        except ValueError as exc:
            raise ValueError(f"invalid port in {value!r}: {exc}") from exc
        if not parts.hostname:
            raise ValueError(f"no host in {value!r}")
        return value.rstrip("/")

    @field_validator("alert_dashboard_url", "alert_webhook_url")
    @classmethod
    def _alert_url_is_http(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http:// or https:// URL with a host, got {value!r}")
        return value

    @model_validator(mode="after")
    def _alert_channels_are_complete(self) -> Settings:
        if self.alert_webhook_url and not self.alert_webhook_secret:
            raise ValueError(
                "PILOTS_ALERT_WEBHOOK_URL needs PILOTS_ALERT_WEBHOOK_SECRET (the key that signs "
                "each request, e.g. $(openssl rand -hex 32))"
            )
        if self.alert_smtp_host and not (self.alert_smtp_from and self.alert_smtp_to):
            raise ValueError(
                "PILOTS_ALERT_SMTP_HOST needs PILOTS_ALERT_SMTP_FROM and PILOTS_ALERT_SMTP_TO"
            )
        if self.alert_smtp_user and not self.alert_smtp_password:
            raise ValueError("PILOTS_ALERT_SMTP_USER needs PILOTS_ALERT_SMTP_PASSWORD")
        return self

    @model_validator(mode="after")
    def _chosen_store_is_configured(self) -> Settings:
        if self.store == "influx" and not self.influx_url:
            raise ValueError("PILOTS_STORE=influx needs PILOTS_INFLUX_URL (the server to use)")
        return self

    @model_validator(mode="after")
    def _no_placeholder_secrets_in_production(self) -> Settings:
        if self.env != "production":
            return self
        secrets = {
            "PILOTS_INFLUX_TOKEN": self.influx_token,
            "PILOTS_INFLUX_PASSWORD": self.influx_password,
            "PILOTS_ALERT_WEBHOOK_SECRET": self.alert_webhook_secret,
            "PILOTS_ALERT_SMTP_PASSWORD": self.alert_smtp_password,
        }
        for name, secret in secrets.items():
            if secret is not None and secret.get_secret_value().lower() in PLACEHOLDER_SECRETS:
                raise ValueError(f"{name} is a placeholder; set a real secret in production")
        target = self.mqtt()
        if target.password is not None and target.password.lower() in PLACEHOLDER_SECRETS:
            raise ValueError("PILOTS_MQTT_URL has a placeholder password; set a real one")
        group = (self.mqtt_shared_group or "").lower()
        if group in {"ingest", "pilots"} or "change-me" in group or group in PLACEHOLDER_SECRETS:
            # The shipped broker refuses any subscription but ingest's (dynamic-security
            # plugin); a name nobody can guess keeps devices out of the group even on a broker
            # that only checks deliveries, where a member's share would be dropped by the ACL.
            raise ValueError(
                "PILOTS_MQTT_SHARED_GROUP is guessable; in production use a random name "
                "(e.g. ingest-$(openssl rand -hex 8))"
            )
        return self

    def mqtt_client_name(self) -> str:
        """Ingest's MQTT client id, with `{hostname}` replaced (one id per worker)."""
        return self.mqtt_client_id.replace("{hostname}", socket.gethostname())

    def mqtt(self, client_id: str | None = None) -> MqttTarget:
        """The broker to use; `mqtt://127.0.0.1:1883` when `PILOTS_MQTT_URL` is unset.

        A `{client_id}` login is the client's id: ingest's (`mqtt_client_name`) unless given.
        """
        target = MqttTarget.parse(self.mqtt_url or f"mqtt://127.0.0.1:{DEFAULT_MQTT_PORT}")
        if target.username is not None and CLIENT_ID_LOGIN in target.username:
            # one broker login per ingest worker, named like its client id (a broker that
            # takes the login as the client id then keeps each worker's session its own)
            login = client_id if client_id is not None else self.mqtt_client_name()
            username = target.username.replace(CLIENT_ID_LOGIN, login)
            target = replace(target, username=username)
        if self.mqtt_ca_file is not None:
            target = replace(target, ca_file=str(self.mqtt_ca_file))
        return target


def load_settings() -> Settings:
    """Read the settings from the environment, turning validation errors into `ConfigError`."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"PILOTS_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            if err["loc"]
            else err["msg"]
            for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc
