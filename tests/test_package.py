"""The product as a user gets it: a wheel with the `lstm-media` command and the shipped models, installed
outside the checkout and run from another directory."""
import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "pipelines" / "models"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Build the wheel and install it (no dependencies: they are this venv's) into a folder of its own."""
    tmp = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp / "dist"), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    wheels = list((tmp / "dist").glob("lstm_media-*.whl"))
    assert len(wheels) == 1
    target = tmp / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                        str(wheels[0])], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    work = tmp / "elsewhere"
    work.mkdir()
    # the installed copy comes first on the path; the checkout is neither the cwd nor on the path
    env = {**os.environ, "PYTHONPATH": str(target), "OMP_NUM_THREADS": "1"}
    return {"wheel": wheels[0], "site": target, "cwd": work, "env": env}


def lstm_media(inst, *args, timeout=300):
    exe = inst["site"] / "bin" / "lstm-media"
    return subprocess.run([sys.executable, str(exe), *args], cwd=inst["cwd"], env=inst["env"],
                          capture_output=True, text=True, timeout=timeout)


def test_wheel_holds_the_command_and_the_models(installed):
    import zipfile

    names = zipfile.ZipFile(installed["wheel"]).namelist()
    assert any(n.endswith("entry_points.txt") for n in names)
    entry = [n for n in names if n.endswith("entry_points.txt")][0]
    assert "lstm-media = pipelines.cli:main" in zipfile.ZipFile(installed["wheel"]).read(entry).decode()
    shipped = sorted(p.name for p in MODELS.glob("*.pt"))
    assert sorted(Path(n).name for n in names if n.startswith("pipelines/models/") and n.endswith(".pt")) == shipped


def test_installed_command_runs_from_another_directory(installed):
    r = subprocess.run([sys.executable, "-c", "import pipelines; print(pipelines.__file__)"], cwd=installed["cwd"],
                       env=installed["env"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().startswith(str(installed["site"])), r.stdout + r.stderr
    r = lstm_media(installed, "--help")
    assert r.returncode == 0 and "kws" in r.stdout and "music" in r.stdout and "models" in r.stdout
    r = lstm_media(installed, "models", "--json")
    assert r.returncode == 0, r.stderr
    listed = {m["name"] for m in json.loads(r.stdout)["models"]}
    assert listed == {p.stem for p in MODELS.glob("*.pt")}


@pytest.mark.skipif(not (MODELS / "kws.pt").is_file(), reason="no shipped kws model in this checkout")
def test_installed_kws_predicts_with_the_shipped_model(installed):
    clip = installed["cwd"] / "clip.wav"
    t = np.arange(16000) / 16000
    pcm = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    with wave.open(str(clip), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.tobytes())
    r = lstm_media(installed, "kws", "predict", "clip.wav", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    pred = json.loads(r.stdout)["predictions"][0]
    assert pred["file"].endswith("clip.wav") and 0.0 <= pred["score"] <= 1.0
    assert pred["label"] in json.loads(lstm_media(installed, "info", "kws", "--json").stdout)["labels"]


@pytest.mark.skipif(not {"video-classify.pt", "video-caption.pt", "music.pt"} <= {p.name for p in MODELS.glob("*.pt")},
                    reason="shipped video/music models absent")
def test_installed_video_and_music_work_without_a_checkpoint(installed):
    import cv2

    clip = installed["cwd"] / "clip.mp4"
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64))
    for k in range(20):
        img = np.full((64, 64, 3), 30, np.uint8)
        cv2.rectangle(img, (5 + 2 * k, 24), (17 + 2 * k, 36), (0, 200, 0), -1)
        w.write(img)
    w.release()
    r = lstm_media(installed, "video", "label", "clip.mp4", "--out", "labels.csv")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "clip.mp4" in (installed["cwd"] / "labels.csv").read_text()
    r = lstm_media(installed, "video", "caption", "clip.mp4")
    assert r.returncode == 0 and r.stdout.strip(), r.stderr[-2000:]
    r = lstm_media(installed, "music", "generate", "--out", "song.mid", "--seconds", "10")
    assert r.returncode == 0, r.stderr[-2000:]
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(str(installed["cwd"] / "song.mid"))
    assert pm.instruments and 5 < pm.get_end_time() <= 12
