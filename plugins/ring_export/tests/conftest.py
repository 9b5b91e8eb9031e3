"""The Ring fake and its media, for every test module here (``ring_testkit`` holds them)."""

from ring_testkit import ring_fake, ring_media  # noqa: F401
