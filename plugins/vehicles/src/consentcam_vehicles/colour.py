"""The dominant colour of a vehicle box, as a word an investigator would use ("white", "red", "grey").

The centre half of the box is read (less road and sky), each pixel is named from its hue, saturation and value,
and the most frequent name wins. Coarse on purpose: a colour is a sorting hint, not a finding.
"""

from __future__ import annotations

import numpy as np

# Hue upper bounds in degrees, and the names; then the achromatic names.
HUES = ((20, "red"), (44, "orange"), (70, "yellow"), (170, "green"), (260, "blue"), (330, "purple"), (361, "red"))
NAMES = tuple(name for _, name in HUES) + ("white", "grey", "black")
WHITE, GREY, BLACK = len(HUES), len(HUES) + 1, len(HUES) + 2
MAX_PIXELS = 4096  # a box's centre is read on a grid of at most this many pixels


def pixel_codes(bgr: np.ndarray) -> np.ndarray:
    """An index into ``NAMES`` per pixel of an Nx3 BGR uint8 array."""
    values = bgr.astype(np.float32) / 255.0
    b, g, r = values[:, 0], values[:, 1], values[:, 2]
    high = values.max(axis=1)
    chroma = high - values.min(axis=1)
    saturation = chroma / np.maximum(high, 1e-9)
    safe = np.maximum(chroma, 1e-9)
    hue = np.where(high == r, ((g - b) / safe) % 6, np.where(high == g, (b - r) / safe + 2, (r - g) / safe + 4)) * 60
    codes = np.searchsorted(np.array([bound for bound, _ in HUES]), hue, side="right").clip(0, len(HUES) - 1)
    codes = np.where(saturation < 0.22, np.where(high > 0.72, WHITE, GREY), codes)
    return np.where(high < 0.2, BLACK, codes)


def pixel_names(bgr: np.ndarray) -> list[str]:
    return [NAMES[code] for code in pixel_codes(bgr)]


def dominant(bgr: np.ndarray, box: tuple[float, float, float, float]) -> str | None:
    """The colour most pixels of the box's centre have; None for a box too small to tell."""
    height, width = bgr.shape[:2]
    x1, y1, x2, y2 = box
    top, bottom = int((y1 + (y2 - y1) * 0.25) * height), int((y2 - (y2 - y1) * 0.25) * height)
    left, right = int((x1 + (x2 - x1) * 0.25) * width), int((x2 - (x2 - x1) * 0.25) * width)
    patch = bgr[top:max(top + 1, bottom), left:max(left + 1, right)]
    pixels = patch.shape[0] * patch.shape[1]
    if pixels < 16:
        return None
    step = max(1, int((pixels / MAX_PIXELS) ** 0.5))
    codes = pixel_codes(patch[::step, ::step].reshape(-1, 3))
    return NAMES[int(np.bincount(codes, minlength=len(NAMES)).argmax())]
