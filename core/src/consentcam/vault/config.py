"""The vault's settings: read from the deployment ``Settings`` when it carries them, else from the same
``CONSENTCAM_`` environment (``CONSENTCAM_VAULT_BACKEND=s3``, ``CONSENTCAM_VAULT_S3_BUCKET=...``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

from .storage import LocalStorage, S3Storage, Storage


class VaultSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONSENTCAM_", env_file=".env", extra="ignore")

    vault_backend: Literal["local", "s3"] = "local"
    vault_s3_bucket: str | None = None
    vault_s3_endpoint: str | None = None
    vault_s3_region: str = "us-east-1"
    vault_s3_access_key: str | None = None
    vault_s3_secret_key: str | None = None
    vault_s3_prefix: str = ""
    vault_object_lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] = "GOVERNANCE"
    vault_probe_timeout_s: float = 600.0
    vault_lock_wait_s: float = 10.0

    @classmethod
    def of(cls, settings: Any) -> VaultSettings:
        """Fields the deployment settings define win over the environment."""
        found = {name: getattr(settings, name) for name in cls.model_fields if hasattr(settings, name)}
        return cls(**found)


def storage_from(settings: Any, vault: VaultSettings) -> Storage:
    if vault.vault_backend == "s3":
        if not vault.vault_s3_bucket:
            raise ValueError("CONSENTCAM_VAULT_BACKEND=s3 needs CONSENTCAM_VAULT_S3_BUCKET")
        return S3Storage(vault.vault_s3_bucket, endpoint_url=vault.vault_s3_endpoint, region=vault.vault_s3_region,
                         access_key=vault.vault_s3_access_key, secret_key=vault.vault_s3_secret_key,
                         prefix=vault.vault_s3_prefix, lock_mode=vault.vault_object_lock_mode)
    return LocalStorage(settings.resolved_evidence_dir)
