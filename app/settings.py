"""Service settings, read from the environment with the prefix MISSILE_SITES_."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
GEODATA_DIR = REPO_ROOT / "geodata"


class Settings(BaseSettings):
    """Every knob of the service; each is documented in README.md."""

    model_config = SettingsConfigDict(env_prefix="MISSILE_SITES_", env_file=".env", extra="ignore")

    gpkg: Path = Field(
        REPO_ROOT / "var" / "catalogue.gpkg",
        description="The live GeoPackage the service reads and analysts' edits go to; seeded from `seed_gpkg` when missing.",
    )
    seed_gpkg: Path = Field(GEODATA_DIR / "catalogue.gpkg", description="The bundled GeoPackage a new live one is copied from.")
    host: str = Field("127.0.0.1", description="Address `missile-sites serve` binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port `missile-sites serve` listens on.")
