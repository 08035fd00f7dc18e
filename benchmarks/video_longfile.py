"""Peak memory of ``lstm-media video label`` / ``label --segment`` / ``caption`` on a long 1080p file
(issue #11 §3: "a 10-minute 1080p H.264 file is labelled window by window in bounded memory ... goal
<= 1 GB"), for the small CNN (the shipped models) and for ResNet-18 at 112 px.

1. The file: ffmpeg's ``testsrc`` pattern, 1920x1080, 25 fps, ``--minutes`` long, H.264 (libx264,
   yuv420p), made once in ``--work``.
2. Checkpoints: the shipped ``video-classify`` / ``video-caption`` (small CNN, 32x32) and ResNet-18
   bundles made through the real training path (``train --frame-encoder resnet18 --input-size 112
   --freeze-encoder --max-steps 1`` on a few rendered clips: random-init weights, which memory does not
   depend on).
3. Every command runs as its own process under ``/usr/bin/time`` (maximum resident set size of the
   whole process, start to exit), ``--threads`` threads.  Beside it, where the memory goes: resident
   memory after importing torch, after torchvision, after loading the model, and the peak while
   labelling the first minute in windows, measured inside one process per encoder.

    python benchmarks/video_longfile.py [--minutes 10] [--work /tmp/longfile] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import machine_info  # benchmarks/ is the script's folder

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024

STAGES = r"""
import re, sys
def mem():
    s = open('/proc/self/status').read()
    return {k: round(int(re.search(k + r':\s+(\d+)', s).group(1)) / 1024) for k in ('VmRSS', 'VmHWM')}
out = {}
import torch
torch.set_num_threads(int(sys.argv[3]))
out['import_torch'] = mem()['VmRSS']
from pipelines.video import infer
if sys.argv[4] != 'small-cnn':
    import torchvision  # noqa: F401
out['import_encoder'] = mem()['VmRSS']
loaded = infer.load_model(sys.argv[2], infer.CLASSIFY, 'cpu')
out['model_loaded'] = mem()['VmRSS']
it = infer.iter_frames
def first_minute(path, size=None):
    for t, f in it(path, size=size):
        if t >= 60:
            return
        yield t, f
infer.iter_frames = first_minute
r = infer.label_segments(None, sys.argv[1], 10.0, progress=False, loaded=loaded)
out['peak_labelling_first_minute'] = mem()['VmHWM']
out['windows'] = r['n']
print(__import__('json').dumps(out))
"""


def make_file(path: Path, minutes: float) -> Path:
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.mp4")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc=size=1920x1080:rate=25:duration={minutes * 60:g}", "-c:v", "libx264",
                    "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(tmp)], check=True)
    tmp.replace(path)
    return path


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipelines.cli", "video", *args]


def resnet_bundles(work: Path, threads: int) -> dict[str, Path]:
    """ResNet-18 classify and caption bundles through the real training path (one step each)."""
    data = work / "tiny-clips"
    if not (data / "classes.txt").is_file():
        subprocess.run(cli("synth", "--out", str(data), "--train", "2", "--val", "1", "--test", "0",
                           "--codecs", "mjpg"), check=True, cwd=ROOT)
    out = {}
    for task in ("classify", "caption"):
        run = work / f"resnet18-{task}"
        if not (run / "best.pt").is_file():
            subprocess.run(cli("train", "--task", task, "--data", str(data), "--out", str(run), "--frame-encoder",
                               "resnet18", "--input-size", "112", "--freeze-encoder", "--epochs", "1",
                               "--max-steps", "1", "--threads", str(threads), "--fresh"), check=True, cwd=ROOT,
                           stdout=subprocess.DEVNULL)
        out[task] = run / "best.pt"
    return out


def peak(cmd: list[str], work: Path) -> dict:
    """Run ``cmd`` under /usr/bin/time: {"peak_rss_mb", "seconds", "exit"} (+ "n" from its JSON)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time", dir=work) as t:
        t0 = time.time()
        p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", t.name, *cmd], cwd=ROOT, capture_output=True,
                           text=True)
        secs = time.time() - t0
        kb = int(t.read().strip().splitlines()[-1])
    res = {"peak_rss_mb": round(kb * 1024 / MB), "seconds": round(secs, 1), "exit": p.returncode}
    try:
        res["n"] = json.loads(p.stdout)["n"]
    except (ValueError, KeyError):
        res["stderr_tail"] = p.stderr.strip().splitlines()[-1:] if p.stderr.strip() else []
    return res


def main(args) -> dict:
    if shutil.which("ffmpeg") is None or not Path("/usr/bin/time").is_file():
        raise SystemExit("needs the ffmpeg executable and /usr/bin/time")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    video = make_file(work / f"testsrc-1080p-{args.minutes:g}min.mp4", args.minutes)
    r18 = resnet_bundles(work, args.threads)
    encoders = {"small-cnn": {"classify": "video-classify", "caption": "video-caption",
                              "input": "32x32 (shipped video-classify), 64x64 (shipped video-caption)"},
                "resnet18": {"classify": str(r18["classify"]), "caption": str(r18["caption"]), "input": "112x112"}}
    th = ["--threads", str(args.threads), "--json"]
    res = {"machine": machine_info(args.threads, note=args.note),
           "file": {"description": f"ffmpeg testsrc, 1920x1080, 25 fps, {args.minutes:g} min, H.264 (libx264 "
                                   "ultrafast, yuv420p)", "bytes": video.stat().st_size,
                    "frames": int(args.minutes * 60 * 25)},
           "goal_peak_rss_mb": 1000, "by_encoder": {}}
    for enc, ck in encoders.items():
        rows = {"input": ck["input"]}
        srt = work / f"{enc}.srt"
        for name, cmd in (("label_segment_10s", cli("label", str(video), "--checkpoint", ck["classify"], "--segment",
                                                     "10", "--out", str(srt), "--overwrite", *th)),
                          ("label_whole_file", cli("label", str(video), "--checkpoint", ck["classify"], *th)),
                          ("caption", cli("caption", str(video), "--checkpoint", ck["caption"], *th))):
            rows[name] = peak(cmd, work)
            print(f"{enc:>9} {name:>17}: {rows[name]}", file=sys.stderr, flush=True)
        p = subprocess.run([sys.executable, "-c", STAGES, str(video), ck["classify"], str(args.threads), enc],
                           cwd=ROOT, capture_output=True, text=True, check=True)
        rows["where_it_goes_mb"] = json.loads(p.stdout.strip().splitlines()[-1])
        print(f"{enc:>9} where: {rows['where_it_goes_mb']}", file=sys.stderr, flush=True)
        res["by_encoder"][enc] = rows
    out = Path(args.out) if args.out else Path(__file__).resolve().parent / "results" / "video-longfile-cpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res))
    return res


def get_args_parser():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "lstm-media-longfile"),
                    help="where the file, the ResNet-18 bundles and outputs go (kept for reruns)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--note", default=None, help="machine note (default: judged from the load average)")
    ap.add_argument("--out", default=None, help="default results/video-longfile-cpu.json")
    return ap


if __name__ == "__main__":
    main(get_args_parser().parse_args())
