"""The platform: everything a service needs, built once per process from the settings."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .clock import Clock
from .db import Database
from .plugins import PluginHost, make_plugin_host
from .security import Keyring
from .settings import Settings


@dataclass
class Platform:
    settings: Settings
    db: Database
    clock: Clock
    keyring: Keyring
    plugins: PluginHost

    def now(self):  # noqa: ANN201 - datetime, kept short for the services
        return self.clock.now()


def builtin_plugins(settings: Settings, keyring: Keyring) -> list[object]:
    """Core's own features that are plugins too (the channels), registered before any third party."""
    from .channels import CorePlugin, EmailChannel, WebhookChannel

    return [CorePlugin(), EmailChannel(settings), WebhookChannel(settings, keyring)]


async def open_platform(
    settings: Settings,
    *,
    clock: Clock | None = None,
    extra_plugins: Iterable[object] = (),
) -> Platform:
    keyring = Keyring(settings.deployment_key())
    db = Database(settings.resolved_database_url)
    await db.detect_spatial()
    plugins = make_plugin_host(
        builtin_plugins(settings, keyring),
        load_entry_points=settings.load_entry_point_plugins,
        extra=extra_plugins,
    )
    return Platform(settings=settings, db=db, clock=clock or Clock(), keyring=keyring, plugins=plugins)
