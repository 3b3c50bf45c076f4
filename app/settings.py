"""Service settings, read from the environment with the prefix MISSILE_SITES_."""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
GEODATA_DIR = REPO_ROOT / "geodata"


class TokenEntry(BaseModel):
    """One operator-issued bearer token, kept only as the SHA-256 of the token (see `app.auth.hash_token`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")]
    role: Literal["reader", "editor"]
    sha256: Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[0-9a-fA-F]{64}$")]


class Settings(BaseSettings):
    """Every knob of the service; each is documented in docs/operations.md."""

    model_config = SettingsConfigDict(env_prefix="MISSILE_SITES_", env_file=".env", extra="ignore")

    gpkg: Path = Field(
        REPO_ROOT / "var" / "catalogue.gpkg",
        description="The live GeoPackage the service reads and analysts' edits go to; seeded from `seed_gpkg` when missing.",
    )
    seed_gpkg: Path = Field(GEODATA_DIR / "catalogue.gpkg", description="The bundled GeoPackage a new live one is copied from.")
    database_url: str | None = Field(
        None,
        description="A `postgresql://` URL: serve and edit the catalogue in PostGIS (made by `missile-sites db init`)"
                    " instead of the live GeoPackage.",
    )
    host: str = Field("127.0.0.1", description="Address `missile-sites serve` binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port `missile-sites serve` listens on.")
    tokens: list[TokenEntry] = Field(
        default_factory=list,
        description='Bearer tokens, hashed: a JSON list of {"name", "role" (reader or editor), "sha256"}.',
    )
    read_access: Literal["open", "token"] = Field(
        "open", description="`open`: reads need no token; `token`: reads need a reader's or an editor's token."
    )
    write_rate_per_minute: float = Field(120, gt=0, description="Writes each token may make per minute, sustained.")
    write_burst: int = Field(20, ge=1, description="Writes a token may make at once before the rate applies.")
    write_wait_s: float = Field(
        20.0, gt=0, le=300,
        description="Longest a write waits for another writer (an import, another worker) before answering 503.",
    )
    max_body_bytes: int = Field(1_048_576, ge=1, description="Largest request body accepted; larger answers 413.")

    @model_validator(mode="after")
    def _tokens_are_distinct(self) -> "Settings":
        """Two entries never share a name or a hash."""
        for field in ("name", "sha256"):
            values = [getattr(entry, field) for entry in self.tokens]
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"MISSILE_SITES_TOKENS: duplicate {field} {', '.join(repeated)}")
        return self
