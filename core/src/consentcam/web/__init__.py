"""The web interface, served by the core's own aiohttp application: owner portal, investigator console,
supervisor page, public transparency report and the private upload page. The pages are static shells whose
scripts use the public API, signed in with a cookie session (see ``session``); the browser libraries are vendored
under ``static/vendor`` (``vendor.sh``), so nothing is loaded from a CDN."""

from .pages import add_pages, page_errors
from .session import REGISTRARS

__all__ = ["REGISTRARS", "add_pages", "page_errors"]
