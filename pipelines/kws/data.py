"""Speech Commands-layout reader, the 12-class task, and seeded waveform-level augmentation.

A dataset folder holds one sub-folder per word of 1 s clips, optional ``validation_list.txt`` /
``testing_list.txt`` (paths relative to the root), and ``_background_noise_/`` noise files.  This
reads Google's Speech Commands v1/v2 as well as what :mod:`pipelines.kws.synth` writes.  Reading a
folder never needs the synthesiser: the split rule (:func:`which_set`) lives here and ``synth`` imports it.
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from encoders.audio import (AugmentConfig, eq_draw, eq_rows, hard_clip, mix_noise, reverb_rows, room_impulse,
                            sample_spec_masks, speed_perturb, telephone_rows, time_shift)
from encoders.io import DecodeError, SkipCounter
from encoders.io.audio import load_audio

SR = 16000
CLIP = SR  # samples in one clip
PREFIX = SR // 2  # context (samples) that may precede a training clip, so the model learns to stream
SILENCE, UNKNOWN = "_silence_", "_unknown_"
BACKGROUND = "_background_noise_"
AUDIO_EXT = (".wav", ".flac", ".ogg", ".aiff", ".aif")
MAX_NUM_WAVS_PER_CLASS = 2 ** 27 - 1  # as in TensorFlow's speech_commands input_data.py
# a clip whose energy (RMS after removing any DC offset) is below this (-80 dBFS) carries no speech; the
# peak alone is not enough: a constant full-scale file has a peak of 1 and no signal at all
SILENCE_RMS = 1e-4
PRESETS = {
    "default": ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"],
    "digits": ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"],
}


def make_labels(words: list[str]) -> list[str]:
    """Class list: ``_silence_``, ``_unknown_``, then the words (TensorFlow's order)."""
    if len(set(words)) != len(words) or not words:
        raise ValueError(f"words must be a non-empty list without repeats, got {words}")
    return [SILENCE, UNKNOWN, *words]


def which_set(filename: str, validation_percentage: float, testing_percentage: float) -> str:
    """Speech Commands' split rule: hash the part of the name before ``_nohash_`` (the speaker)."""
    base = os.path.basename(filename)
    speaker = re.sub(r"_nohash_.*$", "", base)
    h = int(hashlib.sha1(speaker.encode("utf-8")).hexdigest(), 16)
    pct = (h % (MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / MAX_NUM_WAVS_PER_CLASS)
    if pct < validation_percentage:
        return "validation"
    if pct < testing_percentage + validation_percentage:
        return "testing"
    return "training"


def load_clip(path: str | Path, length: int | None = CLIP) -> np.ndarray:
    """One clip at 16 kHz (padded or cut to ``length``); raises :class:`DecodeError` for an undecodable
    file or one without energy (RMS of the DC-free signal below -80 dBFS: silent or constant)."""
    w = load_audio(path, sr=SR, length=length)
    if len(w) and float(np.sqrt(np.mean((w - w.mean()) ** 2))) < SILENCE_RMS:
        raise DecodeError(path, "no signal: energy below -80 dBFS (silent or constant audio)")
    return w


ENGINES = ("espeak", "flite", "festival", "piper", "pico")  # the generators of pipelines.kws.synth: a voice id starts with "<engine>-"


def speaker_of(path: str | Path) -> str:
    """The speaker (voice) part of a Speech Commands file name: what precedes ``_nohash_``."""
    return re.sub(r"_nohash_.*$", "", os.path.basename(str(path)))


def engine_of(path: str | Path, voices: dict[str, str] | None = None) -> str | None:
    """The speech engine that spoke a clip: from ``voices`` (voice id -> engine, as ``synth.json``
    records), else from the voice id's prefix (``espeak-en-us-m3`` -> ``espeak``); None for a human
    recording (a Speech Commands speaker hash has no engine prefix)."""
    spk = speaker_of(path)
    if voices and spk in voices:
        return voices[spk]
    head = spk.split("-", 1)[0]
    return head if head in ENGINES else None


def synth_voices(root: str | Path) -> dict[str, str]:
    """voice id -> engine from ``root/synth.json`` (empty when absent or foreign)."""
    import json

    f = Path(root) / "synth.json"
    try:
        return {v["id"]: v["engine"] for v in json.loads(f.read_text())["voices"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


@dataclass
class Item:
    path: Path
    word: str  # the folder name
    split: str  # "training", "validation" or "testing"
    engine: str | None = None  # the engine that spoke it (synthesised data), None for recordings


@dataclass
class DatasetIndex:
    root: Path
    items: list[Item]
    noise_files: list[Path] = field(default_factory=list)
    has_lists: bool = False
    list_outside: int = 0  # list entries pointing outside the root: skipped
    list_missing: int = 0  # list entries naming no file of the layout

    def split(self, name: str) -> list[Item]:
        return [it for it in self.items if it.split == name]

    @property
    def engines(self) -> list[str]:
        """The engines that spoke this folder's clips (empty for recordings)."""
        return sorted({it.engine for it in self.items if it.engine})

    def subset(self, keep) -> "DatasetIndex":
        """The same folder with only the items for which ``keep(item)`` is true."""
        return DatasetIndex(self.root, [it for it in self.items if keep(it)], self.noise_files, self.has_lists,
                            self.list_outside, self.list_missing)


def read_list(root: Path, f: Path) -> tuple[list[str], int]:
    """Entries of a split list as paths relative to ``root`` (``word/file.wav``), one per line; spaces
    inside names are kept.  Entries that resolve outside ``root`` are dropped and counted."""
    try:
        text = f.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError(f, "not a text file (a split list names one clip per line)") from None
    except OSError as e:
        raise DecodeError(f, e.strerror or str(e)) from None
    base = root.resolve()
    entries, outside = [], 0
    for line in text.splitlines():
        entry = line.rstrip("\r\n").replace("\\", "/")
        if not entry.strip():
            continue
        if not (root / entry).exists() and (root / entry.strip()).exists():
            entry = entry.strip()  # stray blanks around a name that has none
        target = Path(os.path.normpath(base / entry))
        try:
            rel = target.relative_to(base)
        except ValueError:
            outside += 1
            continue
        entries.append(rel.as_posix())
    return entries, outside


def scan_dataset(root: str | Path, validation_percentage: float = 10.0, testing_percentage: float = 10.0,
                 quiet: bool = False) -> DatasetIndex:
    """Index a Speech Commands-layout folder.  With the list files the split follows them; without,
    every clip is split by Speech Commands' speaker-hash rule (all files are still listed).  List
    entries pointing outside the folder are skipped and counted (one stderr line unless ``quiet``)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such dataset folder")
    val, test = root / "validation_list.txt", root / "testing_list.txt"
    has_lists = val.is_file() or test.is_file()
    listed, outside = {}, 0
    for name, f in (("validation", val), ("testing", test)):
        if f.is_file():
            entries, out = read_list(root, f)
            outside += out
            if out and not quiet:
                print(f"{f}: skipped {out} entries pointing outside {root}", file=sys.stderr)
            for e in entries:
                listed[e] = name
    items = []
    voices = synth_voices(root)
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")):
        for f in sorted(d.iterdir()):
            if f.suffix.lower() not in AUDIO_EXT or not f.is_file():
                continue
            rel = f"{d.name}/{f.name}"
            split = (listed.pop(rel, "training") if has_lists
                     else which_set(rel, validation_percentage, testing_percentage))
            items.append(Item(f, d.name, split, engine_of(f.name, voices)))
    noise_dir = root / BACKGROUND
    noise = sorted(p for p in noise_dir.iterdir() if p.suffix.lower() in AUDIO_EXT) if noise_dir.is_dir() else []
    return DatasetIndex(root, items, noise, has_lists, list_outside=outside, list_missing=len(listed))


def noise_bank(root_or_files, skipped: SkipCounter | None = None) -> list[np.ndarray]:
    """Decode every background-noise file (silent ones allowed); bad files are skipped and counted."""
    files = root_or_files
    if isinstance(root_or_files, (str, Path)):
        files = scan_dataset(root_or_files).noise_files
    bank = []
    for f in files:
        try:
            w = load_audio(f, sr=SR, allow_silent=True)
        except DecodeError as e:
            print(str(e), file=sys.stderr)
            if skipped is not None:
                skipped.add(e)
            continue
        if len(w) >= CLIP:
            bank.append(w)
    return bank


PCM = 32767.0  # clips are held as 16-bit integers: exact for WAV sources, and the real Speech Commands
# (~105k clips) then needs 3.4 GB of memory instead of 6.7


def to_float(pcm: torch.Tensor) -> torch.Tensor:
    """int16 clips from :func:`load_clips` -> float32 in [-1, 1]."""
    return pcm.float() / PCM


def load_clips(items: list[Item], skipped: SkipCounter, progress: bool = True) -> tuple[torch.Tensor, list[Item]]:
    """Decode clips to a (N, 16000) int16 tensor (see :func:`to_float`); undecodable files: one line on
    stderr, skipped, counted."""
    waves, kept = [], []
    for it in tqdm(items, desc="decode", disable=not progress, leave=False):
        try:
            w = load_clip(it.path)
            waves.append(torch.from_numpy(np.round(np.clip(w, -1, 1) * PCM).astype(np.int16)))
            kept.append(it)
        except DecodeError as e:
            print(str(e), file=sys.stderr)
            skipped.add(e)
    if not waves:
        return torch.zeros(0, CLIP, dtype=torch.int16), kept
    return torch.stack(waves), kept


def label_of(word: str, labels: list[str]) -> int:
    return labels.index(word) if word in labels and word not in (SILENCE, UNKNOWN) else labels.index(UNKNOWN)


@dataclass
class TaskSplit:
    """One split of the classification task, decoded: clips, labels, and how many silences to add."""

    waves: torch.Tensor  # (N, 16000) int16 keyword + unknown clips (to_float gives audio)
    labels: torch.Tensor  # (N,)
    is_unknown: torch.Tensor  # (N,) bool
    n_silence: int
    n_unknown: int  # unknowns to use (a subset of the pool, as in TensorFlow's setup)
    engines: list = field(default_factory=list)  # (N,) engine of each clip (None: a recording)


def build_split(index: DatasetIndex, split: str | None, labels: list[str], skipped: SkipCounter,
                silence_percentage: float = 10.0, unknown_percentage: float = 10.0,
                progress: bool = True) -> TaskSplit:
    """Decode one split (``None``: every file).  Silence and unknown counts are percentages of the
    keyword count, as in TensorFlow's speech_commands example."""
    items = index.items if split is None else index.split(split)
    waves, kept = load_clips(items, skipped, progress)
    y = torch.tensor([label_of(it.word, labels) for it in kept], dtype=torch.long)
    unk = y == labels.index(UNKNOWN)
    n_kw = int((~unk).sum())
    return TaskSplit(waves, y, unk, n_silence=int(math.ceil(n_kw * silence_percentage / 100)),
                     n_unknown=min(int(unk.sum()), int(math.ceil(n_kw * unknown_percentage / 100))),
                     engines=[it.engine for it in kept])


def silence_clip(rng: np.random.Generator, bank: list[np.ndarray], n: int = CLIP) -> np.ndarray:
    """A noise-only clip at a random level (log-uniform RMS 1e-4..0.1); zeros without noise files."""
    if not bank:
        return np.zeros(n, np.float32)
    src = bank[int(rng.integers(len(bank)))]
    if len(src) < n:  # a noise file shorter than the clip plus its context: loop it
        src = np.tile(src, n // len(src) + 1)
    s = int(rng.integers(0, len(src) - n + 1))
    seg = src[s: s + n]
    level = 10 ** rng.uniform(-4, -1)
    return (seg / max(float(np.sqrt(np.mean(seg ** 2))), 1e-8) * level).astype(np.float32)


def noise_segment(rng: np.random.Generator, bank: list[np.ndarray], n: int) -> np.ndarray:
    src = bank[int(rng.integers(len(bank)))]
    if len(src) < n:
        src = np.tile(src, n // len(src) + 1)
    s = int(rng.integers(0, len(src) - n + 1))
    return src[s: s + n]


def eval_set(split: TaskSplit, bank: list[np.ndarray], labels: list[str], seed: int = 1234,
             subsample_unknown: bool = True, with_engines: bool = False):
    """Fixed evaluation clips: all keyword clips, a seeded subset of unknowns, seeded noise-only silences.
    Returns ((M, 16000) waves, (M,) labels), and with ``with_engines`` also the (M,) list of each clip's
    engine (None for silences and recordings)."""
    rng = np.random.default_rng(seed)
    kw = torch.nonzero(~split.is_unknown).flatten()
    unk = torch.nonzero(split.is_unknown).flatten()
    if subsample_unknown and len(unk) > split.n_unknown:
        unk = unk[torch.from_numpy(rng.permutation(len(unk))[: split.n_unknown])]
    idx = torch.cat([kw, unk]).sort().values
    waves, y = to_float(split.waves[idx]), split.labels[idx]
    engines = [split.engines[i] for i in idx.tolist()] if split.engines else [None] * len(idx)
    n_sil = split.n_silence if bank else 0
    if n_sil:
        sil = torch.from_numpy(np.stack([silence_clip(rng, bank) for _ in range(n_sil)]))
        waves = torch.cat([waves, sil])
        y = torch.cat([y, torch.full((n_sil,), labels.index(SILENCE), dtype=torch.long)])
        engines += [None] * n_sil
    return (waves, y, engines) if with_engines else (waves, y)


def telephone_set(waves: torch.Tensor) -> torch.Tensor:
    """(M, N) evaluation clips passed through the 8 kHz 8-bit mu-law telephone channel (300-3400 Hz); each
    clip as :func:`encoders.audio.telephone` makes it alone."""
    if not len(waves):
        return waves
    return torch.from_numpy(telephone_rows(waves.numpy(), [(300.0, 3400.0)] * len(waves)))


class KWSTrainSet(Dataset):
    """Training clips with seeded, per-epoch augmentation (seed, epoch, index -> the same draw).

    Each item is ``(wave (PREFIX + CLIP,), label, time_masks (K,2), freq_masks (K,2), context)``: the
    clip (gain, time shift) after a half-second context (silence, or the tail of another clip), with
    background noise mixed over both at a random SNR; ``context`` is how much of that context this
    item's batch keeps (:func:`collate`), so the LSTM learns to classify the last second of a stream
    as well as a clip on its own.  Unknowns are redrawn from the whole pool every epoch.
    """

    def __init__(self, split: TaskSplit, bank: list[np.ndarray], labels: list[str],
                 aug: AugmentConfig = AugmentConfig(), seed: int = 0, n_frames: int = 97, n_features: int = 40,
                 context_prob: float = 0.5, balance_engines: bool = False):
        self.split, self.bank, self.labels, self.aug, self.seed = split, bank, labels, aug, seed
        self.kw = torch.nonzero(~split.is_unknown).flatten().tolist()
        self.unk = torch.nonzero(split.is_unknown).flatten().tolist()
        # engine balance: every epoch redraws the keyword clips so that each engine (recordings count as
        # one more) gives the same share, whatever its clip count; otherwise every clip once per epoch
        self.balance = balance_engines and len({split.engines[i] for i in self.kw}) > 1 if split.engines else False
        self.kw_pool = list(self.kw)
        self.n_unknown = split.n_unknown if self.unk else 0
        self.n_silence = split.n_silence
        self.n_frames, self.n_features, self.context_prob = n_frames, n_features, context_prob
        self.silence = labels.index(SILENCE)
        self._xp = np.arange(CLIP, dtype=np.float64)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        g = np.random.default_rng([self.seed, epoch, 7919])
        self.unk_order = g.permutation(len(self.unk)).tolist() if self.unk else []
        if self.balance:
            self.kw = [self.kw_pool[k] for k in self._balanced(g, self.kw_pool)]
            self.unk_order = self._balanced(g, self.unk) if self.unk else []

    def _balanced(self, g, pool: list[int]) -> list[int]:
        """len(pool) positions in ``pool`` drawn with replacement, each engine equally likely."""
        eng = [self.split.engines[i] for i in pool]
        counts = {e: eng.count(e) for e in set(eng)}
        p = np.array([1.0 / counts[e] for e in eng])
        return g.choice(len(pool), size=len(pool), p=p / p.sum()).tolist()

    def __len__(self) -> int:
        return len(self.kw) + self.n_unknown + self.n_silence

    def _perturbed_into(self, dst: np.ndarray, i: int, factor: float, gain: float, shift: int = 0) -> None:
        """Write ``time_shift(speed_perturb(clip i, factor) * gain, shift)`` into ``dst``, the last ``len(dst)``
        samples of a clip-long frame (zeros outside the signal): one interpolation straight from the int16
        clip over the samples kept, no intermediate copies (issue #13: the data side is the training loop's
        bottleneck on a small CPU)."""
        n, tail = CLIP, len(dst)
        w = self.split.waves[i].numpy()
        m = int(round(n / factor)) if factor != 1.0 else n
        c = -((m - n) // 2) if m >= n else (n - m) // 2  # output[j] = resampled[j - c], as speed_perturb centres
        lo, hi = max(0, -c), min(m, n - c)  # output j reads resampled k = j - shift - c, valid in [lo, hi)
        j0, j1 = max(n - tail, lo + shift + c), min(n, hi + shift + c)
        if j1 <= j0:
            return
        k = np.arange(j0 - shift - c, j1 - shift - c, dtype=np.float64)
        vals = np.interp(k * factor if factor != 1.0 else k, self._xp, w)
        out = dst[j0 - (n - tail): j1 - (n - tail)]
        np.divide(vals.astype(np.float32), np.float32(PCM), out=out)  # as to_float: the same float32 values
        out *= np.float32(gain)

    def __getitem__(self, i: int):
        return self.__getitems__([i])[0]

    def __getitems__(self, idx: list[int]) -> list[tuple]:
        """The items ``idx`` (what the DataLoader asks for a batch): each item's draws and cheap parts on
        its own, then each channel effect once over the rows that drew it (see encoders.audio's ``*_rows``:
        a row comes out bit for bit as it would alone, so an item does not depend on its batch)."""
        items = [self._draw(i) for i in idx]
        for effect, run in (("reverb", reverb_rows), ("eq", eq_rows), ("phone", telephone_rows)):
            rows = [k for k, it in enumerate(items) if effect in it[1]]
            if rows:
                done = run(np.stack([items[k][0] for k in rows]), [items[k][1][effect] for k in rows])
                for k, w in zip(rows, done):
                    items[k][0] = w
        out = []
        for wave, ops, label, tm, fm, context, warp in items:
            if "clip" in ops:
                wave = hard_clip(wave, ops["clip"])
            if ops.get("channel"):
                wave = np.clip(wave, -4.0, 4.0)
            out.append((torch.from_numpy(wave.astype(np.float32, copy=False)), label, tm, fm, context, warp))
        return out

    def _draw(self, i: int) -> list:
        """Item ``i`` up to its channel effects: ``[wave, effects, label, time masks, freq masks, context,
        warp]``, ``effects`` holding the parameters the channel effects drew (applied by the caller)."""
        rng = np.random.default_rng([self.seed, self.epoch, i])
        a = self.aug
        if i < len(self.kw):
            src = self.kw[i]
        elif i < len(self.kw) + self.n_unknown:
            src = self.unk[self.unk_order[i - len(self.kw)]]
        else:
            src = None
        wave = np.zeros(PREFIX + CLIP, np.float32)
        clip = wave[PREFIX:]  # a view: the clip is written in place
        if src is None:
            label = self.silence
        else:
            label = int(self.split.labels[src])
            factor, gain = float(rng.uniform(*a.speed)), 10 ** (rng.uniform(*a.gain_db) / 20)
            shift = 0
            if a.shift_ms:
                m = int(SR * a.shift_ms / 1000)
                shift = int(rng.integers(-m, m + 1))
            self._perturbed_into(clip, src, factor, gain, shift)
        if rng.random() < self.context_prob:  # the tail of another clip before this one
            j = int(rng.integers(len(self.split.waves)))
            factor = float(rng.uniform(*a.speed))
            self._perturbed_into(wave[:PREFIX], j, factor, 10 ** (rng.uniform(*a.gain_db) / 20))
        dry = clip.copy() if src is not None else None  # the channel effects read the clip before the noise
        if src is None:
            if self.bank:
                wave += silence_clip(rng, self.bank, len(wave))
        elif self.bank and rng.random() < a.noise_prob:
            noise = noise_segment(rng, self.bank, len(wave))
            snr = rng.uniform(*a.snr_db)
            # the SNR is set against the clip, then the same noise runs through the context too
            s = np.sqrt(np.dot(dry, dry) / CLIP)
            tail = noise[-CLIP:]
            n = max(float(np.sqrt(np.dot(tail, tail) / CLIP)), 1e-8)
            wave += noise * np.float32(s / (n * 10 ** (snr / 20)))
        effects = self._channel(rng, wave, dry) if src is not None else {}
        tm, fm = sample_spec_masks(rng, self.n_frames, self.n_features, a)
        context = int(rng.choice([0, PREFIX // 2, PREFIX]))
        warp = float(rng.uniform(*a.vtlp)) if a.vtlp[0] != a.vtlp[1] else 1.0
        return [wave, effects, label, tm, fm, context, warp]

    def _channel(self, rng, wave: np.ndarray, clip: np.ndarray) -> dict:
        """Speaker/channel augmentation of issue #9 over (context + clip): babble (mixed into ``wave`` here),
        then room, EQ, telephone, clipping, each with its probability: their draws are made here, in the
        order they apply, and returned (``{"reverb": room, "eq": gains, "phone": band, "clip": level,
        "channel": True}``) for :meth:`__getitems__` to apply.  Draws are skipped when a probability is 0
        (old recipes keep their exact random streams)."""
        a = self.aug
        if a.babble_prob and rng.random() < a.babble_prob:
            s = float(np.sqrt(np.mean(clip ** 2)))
            for _ in range(int(rng.integers(1, 4))):
                other = self.split.waves[int(rng.integers(len(self.split.waves)))].numpy().astype(np.float32) / PCM
                other = np.roll(other, int(rng.integers(-SR // 2, SR // 2)))
                o = max(float(np.sqrt(np.mean(other ** 2))), 1e-8)
                snr = rng.uniform(*a.babble_snr_db)
                wave[-CLIP:] += other * (s / (o * 10 ** (snr / 20)))
        ops = {"channel": True}
        if a.reverb_prob and rng.random() < a.reverb_prob:
            ops["reverb"] = room_impulse(rng, float(rng.uniform(*a.rt60)))
        if a.eq_prob and rng.random() < a.eq_prob:
            ops["eq"] = eq_draw(rng, a.eq_db)
        if a.phone_prob and rng.random() < a.phone_prob:
            ops["phone"] = (float(rng.uniform(200, 400)), float(rng.uniform(3000, 3600)))
        if a.clip_prob and rng.random() < a.clip_prob:
            ops["clip"] = float(rng.uniform(0.3, 0.8))
        return ops


def collate(batch):
    """Stack items, keeping the context length that the batch's first item drew (seeded).
    Returns (waves (B, n), labels (B,), time masks, freq masks, VTLP warps (B,))."""
    keep = batch[0][4]
    waves = torch.stack([b[0][PREFIX - keep:] for b in batch])
    return (waves, torch.tensor([b[1] for b in batch]), torch.stack([b[2] for b in batch]),
            torch.stack([b[3] for b in batch]), torch.tensor([b[5] for b in batch], dtype=torch.float32))


__all__ = ["to_float", "scan_dataset", "which_set", "load_clip", "read_list", "SILENCE_RMS", "DatasetIndex", "Item", "make_labels", "PRESETS", "SILENCE", "UNKNOWN", "noise_bank",
           "load_clips", "build_split", "TaskSplit", "eval_set", "KWSTrainSet", "collate", "silence_clip",
           "label_of", "mix_noise", "ENGINES", "engine_of", "speaker_of", "synth_voices", "telephone_set"]
