"""The analyser's settings: environment variables ``CONSENTCAM_VEHICLES_*`` (or a ``.env`` file)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_model_path() -> Path:
    """``<CONSENTCAM_DATA_DIR>/models/yolox_nano.onnx``: beside the platform's other data."""
    return Path(os.environ.get("CONSENTCAM_DATA_DIR", "./data")) / "models" / "yolox_nano.onnx"


class VehicleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONSENTCAM_VEHICLES_", env_file=".env", extra="ignore",
                                      protected_namespaces=())

    model_path: Path = Field(default_factory=default_model_path,
                             description="the YOLOX ONNX file (fetch it with `consentcam-vehicles fetch-model`)")
    model_sha256: str | None = Field(default=None, description="refuse a model file whose SHA-256 differs")
    sample_fps: float = Field(default=1.0, gt=0, le=30, description="frames analysed per second of video")
    score_threshold: float = Field(default=0.3, ge=0.01, le=1, description="objectness x class probability")
    nms_threshold: float = Field(default=0.45, gt=0, le=1, description="IoU above which a weaker box is dropped")
    track_iou: float = Field(default=0.3, gt=0, le=1, description="IoU that continues a track in the next sample")
    track_gap_s: float = Field(default=2.0, ge=0, description="a track survives this long without a detection")
    min_frames: int = Field(default=1, ge=1, description="a span needs this many sampled frames")
    skip_nonref: bool = Field(default=True, description="skip decoding frames nothing refers to (about half the "
                              "decoding); a sample may then land a frame or two after its due time")
    colour: bool = Field(default=True, description="name each vehicle's dominant colour")
    threads: int | None = Field(default=None, ge=1, le=64, description="onnxruntime threads (default: up to 4)")
