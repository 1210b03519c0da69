"""The signed catalog's keys (`BASTION_CATALOG_*`): what `bastion catalog` signs with and what a deployment trusts."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["CatalogSettings"]


class CatalogSettings(BaseSettings):
    """`bastion catalog export|verify|import` (docs/supply-chain.md, "Signed catalog")."""

    model_config = SettingsConfigDict(env_prefix="BASTION_CATALOG_", extra="ignore")

    signing_key: SecretStr = SecretStr("")
    """`BASTION_CATALOG_SIGNING_KEY`: this deployment's private ed25519 key (PEM or JWK) that signs
    exported catalogs (`bastion catalog keygen` makes one); a secret, never printed or logged."""
    trusted_keys: list[dict[str, str]] = Field(default_factory=list)
    """`BASTION_CATALOG_TRUSTED_KEYS`: public JWKs (a JSON list) whose catalogs this deployment
    verifies and imports (the exporting deployment's `bastion catalog keygen` prints its one)."""
    deployment: str = Field(default="default", max_length=128)
    """`BASTION_CATALOG_DEPLOYMENT`: names this deployment in the catalogs it exports (`dev`, `staging-eu`)."""
