"""ConsentCam edge relay: ``consentcam-edge``, the agent that runs next to the owner's cameras and connects out to
the core, and the core plugin that declares the relay. The agent imports nothing of the core: it needs aiohttp,
cryptography and FFmpeg only."""

__version__ = "0.1.0"
