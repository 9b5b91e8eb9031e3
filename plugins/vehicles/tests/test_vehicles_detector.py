"""The detector's own parts (letterbox, grid decode, NMS, colours) on made-up numbers, then the real model on a
real photograph: Debian darknet's dog.jpg holds a bicycle, a white pickup truck and a dog."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from consentcam_vehicles.colour import dominant, pixel_names
from consentcam_vehicles.detector import (
    PAD_VALUE,
    VEHICLE_CLASSES,
    Detector,
    ModelError,
    decode,
    fitted_size,
    grid,
    letterbox,
    nms,
)
from consentcam_vehicles.sampling import UnreadableClip, sample
from vehicles_testkit import ffmpeg


def test_letterbox_places_the_picture_top_left_on_114_as_bgr_floats():
    picture = np.zeros((2, 4, 3), dtype=np.uint8)
    picture[..., 0] = 10  # blue
    picture[..., 2] = 200  # red
    boxed = letterbox(picture, 8)
    assert boxed.tensor.shape == (1, 3, 8, 8) and boxed.tensor.dtype == np.float32
    assert (boxed.width, boxed.height) == (4, 2)
    assert boxed.tensor[0, 0, 0, 0] == 10 and boxed.tensor[0, 2, 0, 0] == 200  # channel order kept: B, G, R
    assert (boxed.tensor[0, :, 2:, :] == PAD_VALUE).all() and (boxed.tensor[0, :, :, 4:] == PAD_VALUE).all()
    assert fitted_size(1920, 1080, 416) == (416, 234) and fitted_size(768, 576, 416) == (416, 312)
    with pytest.raises(ValueError):
        letterbox(np.zeros((10, 10, 3), dtype=np.uint8), 8)


def test_grid_has_one_row_per_cell_of_strides_8_16_32_in_head_order():
    cells, steps = grid(416)
    assert len(cells) == 52 * 52 + 26 * 26 + 13 * 13 == 3549
    assert steps[0, 0] == 8 and steps[52 * 52, 0] == 16 and steps[-1, 0] == 32
    assert cells[1].tolist() == [1, 0] and cells[52].tolist() == [0, 1]  # x varies fastest
    assert cells[-1].tolist() == [12, 12]


def test_decode_turns_cell_offsets_into_boxes_and_scores_per_vehicle_class():
    cells, steps = grid(32)  # 4x4, 2x2, 1x1
    raw = np.zeros((len(cells), 85), dtype=np.float32)
    row = 5  # stride 8, cell (1, 1)
    raw[row, :4] = [0.5, 0.5, np.log(2.0), np.log(4.0)]  # centre (12, 12), 16 wide, 32 high
    raw[row, 4] = 0.9
    raw[row, 5 + 7] = 0.8  # truck
    raw[row, 5 + 2] = 0.5  # car
    boxes, scores = decode(raw, cells, steps)
    assert boxes[row].tolist() == pytest.approx([4, -4, 20, 28])
    truck, car = list(VEHICLE_CLASSES.values()).index("truck"), list(VEHICLE_CLASSES.values()).index("car")
    assert scores[row, truck] == pytest.approx(0.72) and scores[row, car] == pytest.approx(0.45)
    assert scores.shape == (len(cells), 6) and scores[0].max() == 0


def test_nms_keeps_the_best_of_overlapping_boxes_and_separate_ones():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10.5]], dtype=np.float32)
    scores = np.array([0.6, 0.9, 0.5, 0.3], dtype=np.float32)
    assert nms(boxes, scores, 0.45) == [1, 2]
    assert nms(boxes, scores, 0.99) == [1, 0, 2, 3]


def test_colour_names():
    bgr = np.array([[0, 0, 255], [255, 0, 0], [0, 255, 0], [255, 255, 255], [10, 10, 10], [128, 128, 128],
                    [0, 255, 255], [0, 128, 255]], dtype=np.uint8)
    assert pixel_names(bgr) == ["red", "blue", "green", "white", "black", "grey", "yellow", "orange"]
    picture = np.full((40, 40, 3), 255, dtype=np.uint8)
    picture[10:30, 10:30] = (200, 40, 20)  # a blue car on white
    assert dominant(picture, (0.2, 0.2, 0.8, 0.8)) == "blue"
    assert dominant(picture, (0.0, 0.0, 0.05, 0.05)) is None  # too small to tell


def one_frame(path: Path, size: int) -> np.ndarray:
    frames = list(sample(path, every_s=1.0, size=size))
    assert len(frames) == 1 and frames[0].at_s == 0
    return frames[0].bgr


def crop(dog_jpg: Path, tmp_path: Path, spec: str) -> Path:
    target = tmp_path / f"crop-{spec.replace(':', '_')}.png"
    subprocess.run([ffmpeg(), "-nostdin", "-loglevel", "error", "-y", "-i", str(dog_jpg), "-vf", f"crop={spec}",
                    str(target)], check=True, timeout=30)
    return target


def test_the_real_model_finds_the_vehicles_of_dog_jpg_and_nothing_else(vehicles_settings, dog_jpg, tmp_path):
    detector = Detector(vehicles_settings.model_path, threads=2)
    assert detector.size == 416
    whole = one_frame(dog_jpg, 416)
    assert whole.shape == (312, 416, 3)
    found = detector.detect(letterbox(whole, 416))
    names = {d.name for d in found}
    assert {"bicycle", "car"} <= names and names <= set(VEHICLE_CLASSES.values())  # the dog is never reported
    bicycle = next(d for d in found if d.name == "bicycle")
    car = next(d for d in found if d.name == "car")
    assert bicycle.box[0] < 0.2 and 0.6 < bicycle.box[2] < 0.85 and bicycle.score > 0.6  # across the middle
    assert car.box[0] > 0.5 and car.box[3] < 0.4 and car.score > 0.6  # the pickup, top right
    assert dominant(whole, car.box) == "white"

    # Closer, the pickup is what COCO calls a truck; the corner with the dog has no vehicle.
    close = one_frame(crop(dog_jpg, tmp_path, "368:276:400:0"), 416)
    truck = [d for d in detector.detect(letterbox(close, 416)) if d.name == "truck"]
    assert len(truck) == 1 and truck[0].score > 0.6
    empty = one_frame(crop(dog_jpg, tmp_path, "368:276:0:300"), 416)
    assert detector.detect(letterbox(empty, 416)) == []


def test_a_file_that_is_not_a_model_or_not_a_clip_is_refused_clearly(tmp_path):
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not an ONNX model"):
        Detector(bogus)
    with pytest.raises(ModelError, match="no model file"):
        Detector(tmp_path / "missing.onnx")
    with pytest.raises(UnreadableClip):
        list(sample(bogus, every_s=1, size=416))
