"""Configuration through environment variables with the ``TWIN_`` prefix.

Settings are built by :func:`get_settings` when needed, never at import time.
"""

from __future__ import annotations

import getpass
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["TwinSettings", "get_settings"]


class TwinSettings(BaseSettings):
    """Everything a deployment may change."""

    model_config = SettingsConfigDict(env_prefix="TWIN_", env_file=None, extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the twin's PostGIS database; "
        "unset means the private cluster under data_dir.",
    )
    database_admin_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the role that migrates, backs up and restores, when "
        "TWIN_DATABASE_URL names a role of less power; the same as TWIN_DATABASE_URL when unset.",
    )
    statement_timeout_s: float = Field(
        default=60.0, ge=0,
        description="Longest a database statement of a server request may run (s; 0: no limit). "
        "Jobs (imports, scans, tile builds) and the command line are not limited.",
    )
    read_database_urls: list[str] = Field(
        default_factory=list,
        description='SQLAlchemy URLs of read replicas (hot standbys) of the twin\'s database (JSON '
        'list); `twin serve` sends reads there, writes to the primary. Empty: the private cluster\'s '
        'local standby when it runs (`twin db replica start`), else none.',
    )
    db_schema: str = Field(default="twin", description="PostgreSQL schema holding the twin.")
    crs: str = Field(default="EPSG:4548", description="Projected CRS (metres) of the twin.")
    vertical_datum: str = Field(
        default="1985 National Height Datum (normal heights)",
        description="Note on the heights in the survey data.",
    )
    data_dir: Path = Field(default=Path(".twin"), description="Folder for the private cluster and outputs.")
    pg_bin: Path | None = Field(default=None, description="Folder with initdb/pg_ctl; found when unset.")
    pg_port: int | None = Field(default=None, description="Port of the private cluster; derived when unset.")
    default_cover_m: float = Field(default=1.2, description="Cover depth (m) given to EPANET pipes.")
    long_segment_m: float = Field(default=75.0, description="Survey segments longer than this are warned about.")
    short_segment_m: float = Field(default=0.05, description="Survey segments shorter than this are errors.")
    max_depth_m: float = Field(default=30.0, description="Depths beyond this are implausible (error).")
    deep_warning_m: float = Field(default=12.0, description="Depths beyond this are warned about.")
    elevation_tolerance_m: float = Field(default=0.05, description="Tolerance of ground = depth + elevation.")
    geoid_offset_m: float = Field(
        default=0.0,
        description="Geoid undulation (m) added to survey normal heights to get ellipsoidal heights "
        "in the 3D tiles.",
    )
    clearance_rules: Path | None = Field(
        default=None,
        description="CSV of clearance rules (水平/垂直净距); the shipped GB 50289-2016 defaults when unset.",
    )
    cover_rules: Path | None = Field(
        default=None,
        description="CSV of minimum cover rules (覆土); the shipped GB 50289-2016 defaults when unset.",
    )
    cover_location: str = Field(
        default="motor_lane",
        description="Location class (motor_lane or sidewalk) of pipes the cover check has no zone for.",
    )
    service_life: Path | None = Field(
        default=None,
        description="CSV of expected service life by material (dig-site hazards); the shipped table when unset.",
    )
    tiles_dir: Path | None = Field(default=None, description="Folder of the 3D tileset; data_dir/tiles when unset.")
    model_dir: Path | None = Field(
        default=None,
        description="Folder of the stored shutoff models (one per state of the twin, the latest kept); "
        "data_dir/models when unset.",
    )
    dask_scheduler: str | None = Field(
        default=None,
        description="Address of a dask.distributed scheduler (tcp://host:8786) that runs tile builds and "
        "whole-network scans; unset: they run in this process, or on a LocalCluster with --dask.",
    )
    dask_workers: int | None = Field(
        default=None, ge=1,
        description="Worker processes of the LocalCluster (--dask without TWIN_DASK_SCHEDULER); the "
        "cores when unset.",
    )
    scan_partition_above: int = Field(
        default=2_000_000, ge=1,
        description="Whole-network scans of more segments than this run by partitions on two child "
        "processes of this machine, a partition each at a time (0.9 GiB at 3M segments, 1.08x the time) "
        "instead of all at once (5.5 GiB at 3M); a Dask cluster (TWIN_DASK_SCHEDULER, --dask) always partitions.",
    )
    jwt_secret: str | None = Field(
        default=None,
        description="Secret that signs access tokens, at least 32 characters; unset means a random "
        "one kept in data_dir/secrets/jwt.secret (0600; shared by every server worker on this host).",
    )
    token_minutes: int = Field(default=480, ge=1, description="Lifetime of an access token (minutes).")
    host: str = Field(default="127.0.0.1", description="Address `twin serve` listens on.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port `twin serve` listens on.")
    workers: int = Field(default=1, ge=1, description="Server worker processes.")
    cors_origins: list[str] = Field(
        default_factory=list,
        description='Origins allowed to call the API from a browser (JSON list, e.g. ["https://gis.city"]).',
    )
    max_upload_mb: float = Field(default=200.0, gt=0, description="Largest upload (multipart body) accepted (MB).")
    max_json_mb: float = Field(default=2.0, gt=0, description="Largest JSON or form body accepted (MB).")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description='Addresses of reverse proxies whose Host and X-Forwarded-* headers are believed '
        '(JSON list, e.g. ["127.0.0.1"]); none by default.',
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description='Host names clients may address the server by (JSON list; others get 400); '
        'unset: TWIN_HOST, localhost, 127.0.0.1 and ::1.',
    )
    heavy_per_user: int = Field(
        default=2, ge=1, description="Heavy analyses and imports one user may have running at once."
    )
    analyses_per_user: int = Field(
        default=2, ge=1,
        description="Analyses and table readings one user may have running at once in a server process "
        "(one more waits a moment, then gets 429).",
    )
    analyses_global: int = Field(
        default=4, ge=1,
        description="Analyses and table readings a server process runs at once for all users (then 429).",
    )
    threads: int = Field(
        default=16, ge=1,
        description="Worker threads of a server process for requests (reads, light analyses); its "
        "database pool holds as many connections, plus TWIN_HEAVY_THREADS and a few.",
    )
    heavy_threads: int = Field(
        default=2, ge=1,
        description="Threads of a server process for heavy work (whole-network analyses, documents), "
        "apart from the request threads: reads never wait behind it.",
    )
    heavy_deadline_s: float = Field(
        default=10.0, gt=0,
        description="Longest a heavy request waits for a heavy thread (s); then 503 with Retry-After.",
    )
    max_table_rows: int = Field(
        default=2_000_000, ge=1,
        description="Rows an uploaded survey table (import, as-built) may hold; counted before parsing.",
    )
    max_table_mb: float | None = Field(
        default=None, gt=0,
        description="Largest uploaded survey table once unpacked (an XLSX's XML, a CSV's bytes; MB); "
        "10 x TWIN_MAX_UPLOAD_MB when unset.",
    )
    max_proposal_table_rows: int = Field(
        default=2_000, ge=1,
        description="Rows a proposal's point or segment table (POST /proposals/tables) may hold.",
    )
    max_proposal_table_mb: float = Field(
        default=4.0, gt=0, description="Largest proposal table once unpacked (MB).",
    )
    backup_passphrase: SecretStr | None = Field(
        default=None,
        description="Passphrase of `twin backup --encrypt` and of restoring an encrypted backup; "
        "asked for when unset.",
    )
    mqtt_url: SecretStr | None = Field(
        default=None,
        description="URL of the MQTT broker live readings come from (mqtt://user:password@host:port); "
        "unset means the private Mosquitto broker under data_dir (`twin broker start`).",
    )
    mqtt_port: int | None = Field(
        default=None, ge=1, le=65535,
        description="Port of the private broker; a free one, kept in its config, when unset.",
    )
    live_subscriber: bool = Field(
        default=True,
        description="Run the MQTT subscriber (live readings) inside `twin serve` when a broker is "
        "configured or the private one is running; false leaves it to `twin sensors listen`.",
    )
    readings_retention_days: int = Field(
        default=90, ge=1,
        description="Days of sensor readings kept; older daily partitions are dropped.",
    )
    alarm_burst_window_s: float = Field(
        default=300.0, gt=0,
        description="Pressure-drop alarms raised within this many seconds of each other make a "
        "suspected burst.",
    )
    user: str | None = Field(default=None, description="Name recorded on batches; the login name when unset.")
    valve_exercise_years: float = Field(
        default=5.0, gt=0,
        description="Valves not exercised for this many years (or whose last exercise failed) are likely "
        "to fail: the shutoff flags them and computes their next ring.",
    )


    @property
    def user_name(self) -> str:
        """Who the command line acts as: ``TWIN_USER``, else the login name."""
        return self.user or getpass.getuser()

    @property
    def table_mb(self) -> float:
        """Largest uploaded survey table once unpacked (MB): TWIN_MAX_TABLE_MB, else 10 x the upload cap."""
        return self.max_table_mb if self.max_table_mb is not None else 10 * self.max_upload_mb


def get_settings(**overrides: object) -> TwinSettings:
    """Build the settings from the environment, with explicit overrides on top."""
    return TwinSettings(**overrides)  # type: ignore[arg-type]
