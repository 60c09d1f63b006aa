"""Configuration through environment variables with the ``TWIN_`` prefix.

Settings are built by :func:`get_settings` when needed, never at import time.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
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
    jwt_secret: str | None = Field(
        default=None,
        description="Secret that signs access tokens; unset means a random one kept in the database "
        "(shared by every server process on that database).",
    )
    token_minutes: int = Field(default=480, ge=1, description="Lifetime of an access token (minutes).")
    host: str = Field(default="127.0.0.1", description="Address `twin serve` listens on.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port `twin serve` listens on.")
    workers: int = Field(default=1, ge=1, description="Server worker processes.")
    cors_origins: list[str] = Field(
        default_factory=list,
        description='Origins allowed to call the API from a browser (JSON list, e.g. ["https://gis.city"]).',
    )
    max_upload_mb: float = Field(default=200.0, gt=0, description="Largest request body accepted (MB).")
    heavy_per_user: int = Field(
        default=2, ge=1, description="Heavy analyses and imports one user may have running at once."
    )
    user: str | None = Field(default=None, description="Name recorded on batches; the login name when unset.")


def get_settings(**overrides: object) -> TwinSettings:
    """Build the settings from the environment, with explicit overrides on top."""
    return TwinSettings(**overrides)  # type: ignore[arg-type]
