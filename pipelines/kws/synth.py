"""Offline default data: a Speech Commands-layout dataset spoken by espeak-ng and flite voices.

Layout written (as Google's Speech Commands v2)::

    OUT/<word>/<voice>_nohash_<take>.wav     1 s, 16 kHz mono, 16-bit, speech centred
    OUT/validation_list.txt, OUT/testing_list.txt
    OUT/_background_noise_/*.wav             generated coloured noises (+ real ambience if installed)
    OUT/synth.json                           the configuration and voice list

Voices are split by identity (engine + accent + variant) with Speech Commands' own hashing rule
(:func:`which_set`), so that no test voice is ever heard in training.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from encoders.io import DecodeError
from encoders.io.audio import load_audio, write_wav
from encoders.config import DictConfig

from .data import SR, noise_bank, scan_dataset, which_set

SPEECH_COMMANDS_WORDS = ("yes no up down left right on off stop go zero one two three four five six seven "
                         "eight nine bed bird cat dog happy house marvin sheila tree wow backward forward "
                         "follow learn visual").split()
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
                  "en-029", "en-us-nyc")
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")


@dataclass(frozen=True)
class SynthConfig(DictConfig):
    """What :func:`synthesize` generates.  Defaults: 389 voices, ~27,600 clips."""

    words: tuple[str, ...] = tuple(SPEECH_COMMANDS_WORDS)
    accents: tuple[str, ...] = ESPEAK_ACCENTS
    variants_per_accent: int = 48  # espeak-ng voice variants drawn per accent (each is one "voice")
    espeak_takes: int = 2  # renditions of every word per espeak-ng voice (speed / pitch varied)
    flite_voices: tuple[str, ...] = FLITE_VOICES
    flite_takes: int = 4  # renditions per word per flite voice (stretch / pitch varied)
    validation_percentage: float = 10.0
    testing_percentage: float = 10.0
    noise_seconds: float = 30.0
    seed: int = 0
    workers: int = 2



def espeak_variants() -> list[str]:
    """Voice variants this espeak-ng knows (``+m3``, ``+klatt``...), sorted."""
    out = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True).stdout
    names = sorted({line.split()[4].split("/")[-1] for line in out.splitlines()[1:] if len(line.split()) >= 5})
    return names


def plan_voices(cfg: SynthConfig) -> list[dict]:
    """One dict per voice identity: engine, name, and its base prosody (seeded)."""
    rng = np.random.default_rng(cfg.seed)
    voices = []
    variants = espeak_variants() if cfg.accents and cfg.variants_per_accent else []
    for accent in cfg.accents:
        if not variants:
            break
        pick = rng.choice(len(variants), size=min(cfg.variants_per_accent, len(variants)), replace=False)
        for i in sorted(pick):
            v = variants[i]
            voices.append({"engine": "espeak", "voice": f"{accent}+{v}",
                           "id": re.sub(r"[^A-Za-z0-9-]", "-", f"espeak-{accent}-{v}"),
                           "speed": int(rng.integers(120, 200)), "pitch": int(rng.integers(15, 85)),
                           "amplitude": int(rng.integers(80, 180))})
    for v in cfg.flite_voices:
        voices.append({"engine": "flite", "voice": v, "id": f"flite-{v}",
                       "stretch": float(rng.uniform(0.9, 1.2)), "f0": float(rng.uniform(90, 180))})
    return voices


def _jobs(cfg: SynthConfig, voices: list[dict], out: Path) -> list[dict]:
    """espeak-ng: one job per voice and take speaks every word in one call (35x fewer processes);
    flite: one job per word and take."""
    jobs = []
    rng = np.random.default_rng(cfg.seed + 1)
    for v in voices:
        if v["engine"] == "espeak":
            for t in range(cfg.espeak_takes):
                order = [cfg.words[i] for i in rng.permutation(len(cfg.words))]  # list intonation varies
                jobs.append({**v, "words": order, "take": t, "out": str(out), "seed": int(rng.integers(2 ** 31))})
        else:
            for w in cfg.words:
                for t in range(cfg.flite_takes):
                    jobs.append({**v, "words": [w], "take": t, "out": str(out), "seed": int(rng.integers(2 ** 31))})
    return jobs


def clip_path(out: str | Path, voice_id: str, word: str, take: int) -> Path:
    return Path(out) / word / f"{voice_id}_nohash_{take}.wav"


def split_words(wave: np.ndarray, n: int, sr: int = SR, min_gap_s: float = 0.2) -> list[np.ndarray] | None:
    """Cut a recording of ``n`` words separated by pauses into ``n`` pieces; None if it does not give n."""
    hop = sr // 100
    frames = np.abs(wave[: len(wave) // hop * hop]).reshape(-1, hop).max(1)
    active = frames > 0.01 * frames.max()
    segs, start, quiet, end = [], None, 0, 0
    for i, a in enumerate(active):
        if a:
            start = i if start is None else start
            quiet, end = 0, i
        elif start is not None:
            quiet += 1
            if quiet >= min_gap_s * 100:
                segs.append((start, end))
                start = None
    if start is not None:
        segs.append((start, end))
    if len(segs) != n:
        return None
    m = 3  # 30 ms of margin each side
    return [wave[max(a - m, 0) * hop: (b + 1 + m) * hop] for a, b in segs]


def trim_and_centre(wave: np.ndarray, n: int = SR, threshold: float = 0.02) -> np.ndarray:
    """Cut leading/trailing silence (below ``threshold`` x peak) and centre the speech in ``n`` samples."""
    peak = float(np.abs(wave).max())
    idx = np.flatnonzero(np.abs(wave) > threshold * peak)
    if len(idx):
        margin = int(0.02 * SR)
        wave = wave[max(idx[0] - margin, 0): idx[-1] + margin]
    if len(wave) > n:  # long takes: keep the middle
        s = (len(wave) - n) // 2
        return wave[s: s + n]
    left = (n - len(wave)) // 2
    return np.pad(wave, (left, n - len(wave) - left))


def _espeak(job: dict, text: str, wav: str, rng) -> np.ndarray:
    speed = int(job["speed"] * rng.uniform(0.85, 1.15))
    pitch = int(np.clip(job["pitch"] + rng.integers(-8, 9), 0, 99))
    subprocess.run(["espeak-ng", "-v", job["voice"], "-s", str(speed), "-p", str(pitch), "-a", str(job["amplitude"]), "-g", "40",
                    "-w", wav, text], check=True, capture_output=True, timeout=60)
    return load_audio(wav, sr=SR)  # the one decoding place: resamples espeak's 22.05 kHz


def _flite(job: dict, text: str, wav: str, rng) -> np.ndarray:
    stretch = job["stretch"] * rng.uniform(0.8, 1.25)
    f0 = job["f0"] * rng.uniform(0.8, 1.25)
    subprocess.run(["flite", "-voice", job["voice"], "--setf", f"duration_stretch={stretch:.3f}",
                    "--setf", f"int_f0_target_mean={f0:.1f}", "-t", text, "-o", wav],
                   check=True, capture_output=True, timeout=60)
    return load_audio(wav, sr=SR)


def _finish(wave: np.ndarray, rng) -> np.ndarray:
    wave = trim_and_centre(wave)
    return wave / max(float(np.abs(wave).max()), 1e-6) * rng.uniform(0.3, 0.9)


def _work(job: dict) -> list[str]:
    """Speak a job's words; returns error lines (empty when every clip was written)."""
    rng = np.random.default_rng(job["seed"])
    speak = _espeak if job["engine"] == "espeak" else _flite
    errors = []
    with tempfile.TemporaryDirectory(prefix="kws-synth-") as tmp:
        wav = os.path.join(tmp, "x.wav")
        words = job["words"]
        pieces = None
        if len(words) > 1:  # all words in one call, cut at the pauses; per word if that fails
            try:
                pieces = split_words(speak(job, ", ".join(words), wav, rng), len(words))
            except (subprocess.SubprocessError, DecodeError, OSError):
                pieces = None
        for k, w in enumerate(words):
            path = clip_path(job["out"], job["id"], w, job["take"])
            try:
                piece = pieces[k] if pieces is not None else speak(job, w, wav, rng)
                write_wav(path, _finish(piece, rng), SR)
            except (subprocess.SubprocessError, DecodeError, OSError) as e:
                errors.append(f"{path}: {type(e).__name__}: {' '.join(str(e).split())[:200]}")
    return errors


def make_noises(out: Path, seconds: float = 30.0, seed: int = 0) -> list[Path]:
    """Background noises: sox white/pink/brown, ffmpeg blue/violet, a mains hum, and (when Debian's
    sonic-pi-samples is installed) real ambience converted to 16 kHz."""
    out.mkdir(parents=True, exist_ok=True)
    made = []
    s = f"{seconds:g}"
    for colour in ("whitenoise", "pinknoise", "brownnoise"):
        p = out / f"{colour.replace('noise', '')}_noise.wav"
        subprocess.run(["sox", "-q", "-n", "-r", str(SR), "-b", "16", "-c", "1", str(p), "synth", s, colour,
                        "vol", "0.5"], check=True, capture_output=True)
        made.append(p)
    for colour in ("blue", "violet"):
        p = out / f"{colour}_noise.wav"
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        f"anoisesrc=color={colour}:amplitude=0.3:duration={s}:sample_rate={SR}:seed={seed + 7}",
                        "-ac", "1", "-c:a", "pcm_s16le", str(p)], check=True, capture_output=True)
        made.append(p)
    p = out / "hum_and_hiss.wav"
    subprocess.run(["sox", "-q", "-n", "-r", str(SR), "-b", "16", "-c", "1", str(p), "synth", s, "sine", "50",
                    "sine", "100", "pinknoise", "remix", "-", "vol", "0.4"], check=True, capture_output=True)
    made.append(p)
    ambi = Path("/usr/share/sonic-pi/samples")
    if ambi.is_dir():
        parts = []
        for f in sorted(ambi.glob("ambi_*.flac")):
            try:
                parts.append(load_audio(f, sr=SR))
            except DecodeError:
                continue
        if parts:
            made.append(write_wav(out / "sonic_pi_ambience.wav", np.concatenate(parts) * 0.5, SR))
    return made


def synthesize(out: str | Path, cfg: SynthConfig = SynthConfig(), progress: bool = True) -> dict:
    """Write the dataset to ``out``; returns a summary ``{"clips", "voices", "failed", "splits", "seconds"}``."""
    import time

    t0 = time.time()
    out = Path(out)
    if not (shutil.which("espeak-ng") or not cfg.accents) or not (shutil.which("flite") or not cfg.flite_voices):
        from pipelines.cli_common import UserError

        raise UserError("espeak-ng and flite are needed: apt-get install -y espeak-ng flite")
    out.mkdir(parents=True, exist_ok=True)
    voices = plan_voices(cfg)
    jobs = _jobs(cfg, voices, out)
    for w in cfg.words:
        (out / w).mkdir(exist_ok=True)
    failed = []
    ctx = get_context("fork") if hasattr(os, "fork") else get_context()
    with ctx.Pool(max(cfg.workers, 1)) as pool:
        for errs in tqdm(pool.imap_unordered(_work, jobs, chunksize=4), total=len(jobs), desc="synth",
                         disable=not progress, leave=False):
            failed += errs
    done = [clip_path(out, j["id"], w, j["take"]) for j in jobs for w in j["words"]]
    done = [p for p in done if p.is_file()]
    splits = {"training": 0, "validation": 0, "testing": 0}
    lists = {"validation": [], "testing": []}
    for p in done:
        rel = f"{p.parent.name}/{p.name}"
        s = which_set(rel, cfg.validation_percentage, cfg.testing_percentage)
        splits[s] += 1
        if s in lists:
            lists[s].append(rel)
    (out / "validation_list.txt").write_text("".join(r + "\n" for r in sorted(lists["validation"])))
    (out / "testing_list.txt").write_text("".join(r + "\n" for r in sorted(lists["testing"])))
    noises = make_noises(out / "_background_noise_", cfg.noise_seconds, cfg.seed)
    voice_split = {v["id"]: which_set(f"{v['id']}_nohash_0.wav", cfg.validation_percentage, cfg.testing_percentage)
                   for v in voices}
    summary = {"clips": len(done), "voices": len(voices), "failed": len(failed), "splits": splits,
               "noises": [p.name for p in noises], "seconds": round(time.time() - t0, 1)}
    (out / "synth.json").write_text(json.dumps({"config": cfg.to_dict(), "summary": summary,
                                                "voices": voices, "voice_split": voice_split,
                                                "errors": failed[:50]}, indent=1))
    return summary


def make_long_recording(data: str | Path, out_wav: str | Path, words: list[str], n_keywords: int = 16,
                        n_unknown: int = 4, split: str = "testing", snr_db: float = 15.0, seed: int = 0,
                        gap_s: tuple[float, float] = (1.0, 2.5)) -> list[dict]:
    """A long stream for :func:`pipelines.kws.detect`: clips of held-out voices separated by gaps, all
    over continuous background noise.  Writes ``out_wav`` and ``out_wav``'s ``.json`` with the truth
    ``[{"word", "time_s" (speech centre), "keyword"}]``, which it also returns."""
    rng = np.random.default_rng(seed)
    items = [it for it in scan_dataset(data).items if it.split == split]
    kw = [it for it in items if it.word in words]
    unk = [it for it in items if it.word not in words]
    chosen = [(kw[i], True) for i in rng.choice(len(kw), size=min(n_keywords, len(kw)), replace=False)]
    if unk:
        chosen += [(unk[i], False) for i in rng.choice(len(unk), size=min(n_unknown, len(unk)), replace=False)]
    order = rng.permutation(len(chosen))
    pieces, truth, t = [np.zeros(int(SR * 1.0), np.float32)], [], 1.0
    for k in order:
        it, is_kw = chosen[k]
        clip = load_audio(it.path, sr=SR, length=SR)
        pieces.append(clip)
        truth.append({"word": it.word, "time_s": round(t + 0.5, 3), "keyword": bool(is_kw), "file": str(it.path)})
        gap = rng.uniform(*gap_s)
        pieces.append(np.zeros(int(SR * gap), np.float32))
        t += 1.0 + int(SR * gap) / SR
    speech = np.concatenate(pieces)
    noise_files = sorted((Path(data) / "_background_noise_").glob("*.wav"))
    if noise_files:
        bank = noise_bank(data)
        src = bank[int(rng.integers(len(bank)))]
        reps = int(np.ceil(len(speech) / len(src)))
        noise = np.tile(src, reps)[: len(speech)]
        level = np.sqrt(np.mean(np.concatenate([p for p in pieces[1::2]]) ** 2))
        noise = noise / max(np.sqrt(np.mean(noise ** 2)), 1e-8) * level / 10 ** (snr_db / 20)
        speech = speech + noise.astype(np.float32)
    write_wav(out_wav, speech / max(1.0, float(np.abs(speech).max())), SR)
    Path(out_wav).with_suffix(".json").write_text(json.dumps(truth, indent=1))
    return truth


__all__ = ["SynthConfig", "synthesize", "which_set", "make_noises", "make_long_recording", "plan_voices",
           "trim_and_centre", "SPEECH_COMMANDS_WORDS"]
