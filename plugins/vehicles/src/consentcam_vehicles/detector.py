"""A YOLOX object detector run with onnxruntime on the CPU, reporting vehicles only.

The exported YOLOX graph ends before its decode: each of its 3549 rows (a 52x52, 26x26 and 13x13 grid for
strides 8, 16 and 32 at 416x416) holds a box offset relative to its grid cell, the objectness and the 80 class
probabilities (both already through a sigmoid). The grid decode and the non-maximum suppression are done here.

Input is what YOLOX was trained on: BGR, 0-255 as float, the image scaled to fit and placed at the top left of a
square filled with 114 (YOLOX's letterbox does not centre the image).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis",
    "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed",
    "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven",
    "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)
# Only these are ever reported: the analyser sorts evidence by vehicle, nothing else (people are never labelled).
VEHICLE_CLASSES = {1: "bicycle", 2: "car", 3: "motorcycle", 5: "bus", 6: "train", 7: "truck"}
STRIDES = (8, 16, 32)
PAD_VALUE = 114


class ModelError(Exception):
    """The model file is missing, unreadable, or not a YOLOX export of the expected shape."""


@dataclass(frozen=True)
class Detection:
    name: str
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 as fractions of the frame


@dataclass(frozen=True)
class Letterboxed:
    """A frame ready for the model, and the size (in model pixels) the picture occupies in it."""

    tensor: np.ndarray  # 1x3xSxS float32
    width: int
    height: int


def fitted_size(width: int, height: int, size: int) -> tuple[int, int]:
    """The scaled size of a ``width``x``height`` picture inside a ``size`` square, aspect kept."""
    ratio = min(size / width, size / height)
    return max(1, min(size, round(width * ratio))), max(1, min(size, round(height * ratio)))


def letterbox(bgr: np.ndarray, size: int) -> Letterboxed:
    """Place an already scaled BGR picture (HxWx3 uint8, fitting in ``size``) at the top left of a padded square."""
    height, width = bgr.shape[:2]
    if height > size or width > size:
        raise ValueError(f"picture {width}x{height} does not fit in {size}x{size}; scale it first")
    square = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    square[:height, :width] = bgr
    tensor = np.ascontiguousarray(square.transpose(2, 0, 1)[None], dtype=np.float32)
    return Letterboxed(tensor, width, height)


def grid(size: int, strides: tuple[int, ...] = STRIDES) -> tuple[np.ndarray, np.ndarray]:
    """(cell x/y per row, stride per row) in the order the YOLOX head emits its rows."""
    cells, steps = [], []
    for stride in strides:
        n = size // stride
        ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        cells.append(np.stack((xs, ys), axis=-1).reshape(-1, 2))
        steps.append(np.full((n * n, 1), stride))
    return np.concatenate(cells).astype(np.float32), np.concatenate(steps).astype(np.float32)


def decode(raw: np.ndarray, cells: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw head rows (Nx85) to boxes x1y1x2y2 in model pixels and each row's score for each vehicle class
    (objectness x class probability, Nx6 in ``VEHICLE_CLASSES`` order)."""
    centre = (raw[:, :2] + cells) * steps
    size = np.exp(np.clip(raw[:, 2:4], -20, 20)) * steps
    boxes = np.concatenate((centre - size / 2, centre + size / 2), axis=1)
    scores = raw[:, 4:5] * raw[:, [5 + c for c in VEHICLE_CLASSES]]
    return boxes, scores


def iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Intersection over union of one box (x1y1x2y2) with each of ``others``."""
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Greedy non-maximum suppression: indices kept, best first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        if order.size == 1:
            break
        rest = order[1:]
        order = rest[iou(boxes[best], boxes[rest]) <= threshold]
    return keep


class Detector:
    """One onnxruntime session on the model file; ``detect`` takes a letterboxed frame."""

    def __init__(self, model_path: Path, *, score_threshold: float = 0.3, nms_threshold: float = 0.45,
                 threads: int | None = None) -> None:
        import onnxruntime as ort

        if not Path(model_path).is_file():
            raise ModelError(f"no model file at {model_path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for a file that is not a model
            raise ModelError(f"{model_path} is not an ONNX model onnxruntime can load: {exc}") from exc
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape = list(inputs[0].shape) if len(inputs) == 1 else []
        if len(shape) != 4 or shape[1] != 3 or not isinstance(shape[2], int) or shape[2] != shape[3]:
            raise ModelError(f"{model_path}: expected one square 1x3xSxS input, found {[i.shape for i in inputs]}")
        self.size = int(shape[2])
        self.input_name = inputs[0].name
        self.cells, self.steps = grid(self.size)
        out = list(outputs[0].shape) if len(outputs) == 1 else []
        if len(out) != 3 or out[2] != 5 + len(COCO_CLASSES) or out[1] not in (len(self.cells), None, "N"):
            raise ModelError(f"{model_path}: expected a YOLOX output of {len(self.cells)}x85, found {out}")
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold

    def raw(self, frame: Letterboxed) -> np.ndarray:
        return self.session.run(None, {self.input_name: frame.tensor})[0][0]

    def detect(self, frame: Letterboxed) -> list[Detection]:
        """Vehicles in the frame, with boxes as fractions of the picture.

        Each class is thresholded and suppressed on its own (as YOLOX's class-aware NMS does), so one box may be
        both "car" and "truck" when the model is torn between them: a pickup should be found by either search."""
        boxes, scores = decode(self.raw(frame), self.cells, self.steps)
        scale = np.array([frame.width, frame.height, frame.width, frame.height], dtype=np.float32)
        found: list[Detection] = []
        for column, name in enumerate(VEHICLE_CLASSES.values()):
            mine = np.flatnonzero(scores[:, column] >= self.score_threshold)
            if not mine.size:
                continue
            for index in nms(boxes[mine], scores[mine, column], self.nms_threshold):
                box = np.clip(boxes[mine[index]] / scale, 0.0, 1.0)
                if box[2] <= box[0] or box[3] <= box[1]:
                    continue
                found.append(Detection(name, float(scores[mine[index], column]),
                                       (float(box[0]), float(box[1]), float(box[2]), float(box[3]))))
        found.sort(key=lambda d: -d.score)
        return found
