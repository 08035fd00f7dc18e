"""The recipe of the shipped keyword-spotting models (``make models`` runs :func:`ship`).

Both models train with the default ``train`` recipe (:class:`pipelines.kws.train.KWSConfig`: 2x128 LSTM,
40 MFCC, 12 epochs (at least 1500 steps), batch 64, AdamW 3e-3, augmentation on, seed 0) on one default synthesised data set
(:class:`pipelines.kws.synth.SynthConfig`: 35 words spoken by 476 voices of four engines — espeak-ng, flite,
Festival, piper — split by voice):

* ``kws``        — preset ``default``: yes no up down left right on off stop go + _unknown_ + _silence_;
* ``kws-digits`` — preset ``digits``: zero .. nine + _unknown_ + _silence_.

Held-out figures come from voices the model never heard (the data set's testing voices; the same
generators, other voices and renditions): clip accuracy with its count, the same clips through an 8 kHz
mu-law telephone channel, leave-one-engine-out accuracy (the recipe trained again without each engine in
turn, tested on every clip of the engine it never heard: issue #9's figure), the same protocol on a fifth
engine that no run trained on (SVOX Pico, ``synth --engines pico``: ``outside_pico_accuracy``), and streaming detection over
a long recording of those voices in background noise (``stream-wav`` defaults: 16 keywords, 4 other
words, 15 dB SNR) with the shipped detection settings.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from .. import bundle
from .data import PRESETS

DESCRIPTIONS = {
    "kws": "Spots yes, no, up, down, left, right, on, off, stop and go (plus unknown words and silence) in 1 s "
           "clips or streamed audio.",
    "kws-digits": "Spots the spoken digits zero to nine (plus unknown words and silence) in 1 s clips or "
                  "streamed audio.",
}


def _synth_config(quick: bool):
    from .synth import SynthConfig

    if quick:
        return SynthConfig(words=("yes", "no", "zero", "one", "cat"), engines=("espeak", "flite"),
                           variants_per_accent=1, espeak_takes=1, flite_variants=1)
    return SynthConfig()


def _same_synth(data: Path, cfg) -> bool:
    """``data`` already holds a complete synthesis made with ``cfg`` (the worker count aside)."""
    try:
        meta = json.loads((data / "synth.json").read_text())
    except (OSError, ValueError):
        return False
    from .synth import ENGINES_ALL

    # the settings of an engine that does not speak are not part of the synthesis (and may postdate it)
    unused = tuple(f"{e}_" for e in ENGINES_ALL if e not in cfg.engines)
    want = {k: v for k, v in json.loads(json.dumps(cfg.to_dict())).items() if k != "workers" and not k.startswith(unused)}
    have = {k: v for k, v in meta.get("config", {}).items() if k != "workers" and not k.startswith(unused)}
    return want == have and meta.get("summary", {}).get("clips", 0) > 0 and (data / "testing_list.txt").is_file()


def _outside_data(folder: Path, quick: bool) -> Path | None:
    """The outside test set: every word spoken by SVOX Pico (``synth --engines pico`` defaults: 48
    pseudo-speakers of its two voices), made once into ``folder``; None (and a line) when Pico is not
    installed."""
    from .synth import SynthConfig, engine_available, synthesize

    cfg = SynthConfig(engines=("pico",), seed=0) if not quick else SynthConfig(
        words=("yes", "no", "zero", "one", "cat"), engines=("pico",), pico_variants=2)
    if not engine_available("pico", cfg):
        print("kws ship: SVOX Pico is not installed (pip install ttspico): no outside-engine figure", file=sys.stderr)
        return None
    if not _same_synth(folder, cfg):
        print(f"kws ship: synthesising the outside test set (SVOX Pico) into {folder}", file=sys.stderr)
        synthesize(folder, cfg, progress=False)
    return folder


def _finished(run: Path, cfg) -> dict | None:
    """The summary of a training already finished in ``run`` with exactly ``cfg`` (say, the same command
    run by hand or in parallel beforehand), else None: such a run is reused, not repeated."""
    try:
        rep = json.loads((run / "test_report.json").read_text())
        b, _ = bundle.read(run / "best.pt")
    except (OSError, ValueError, bundle.BundleError):
        return None
    want = json.loads(json.dumps(cfg.to_dict()))
    # a setting added to the recipe after the run was trained did, at its default, what that run did
    have = {**json.loads(json.dumps(type(cfg)().to_dict())), **(b.get("task") or {})}
    return rep if have == want and rep.get("test_n") is not None else None


def _train_or_reuse(data: Path, run: Path, cfg) -> dict:
    from .train import train

    done = _finished(run, cfg)
    if done is not None:
        print(f"kws ship: reusing the finished run in {run}", file=sys.stderr)
        return done
    return train(data, run, cfg, progress=False, resume=False, device="cpu")


def ship(work: Path, models_dir: Path, quick: bool = False, loeo: bool = True) -> list[dict]:
    """Synthesise the default data into ``work/data`` (reused when ``work/data`` already holds the same
    synthesis), train ``kws`` and ``kws-digits`` into ``work/<name>``, measure them on held-out voices and
    write ``models_dir/<name>.pt``.  Returns the model-card rows.  ``quick``: a tiny version (3 words of
    13 voices, 1 epoch, a 16-unit LSTM) for the tests of this code only.  ``loeo``: also train the recipe
    once without each engine and record the left-out engine's accuracy (``loeo_<engine>_accuracy``); ``"finished"``:
    record only the rotations already trained in ``work`` (see :func:`_finished`), train none."""
    from .data import scan_dataset
    from .stream import DetectConfig, detect, score_detections
    from .synth import make_long_recording, synthesize
    from .train import KWSConfig, load, outside_engine_accuracy, train
    from encoders.io.audio import load_audio

    work, models_dir = Path(work), Path(models_dir)
    data = work / "data"
    scfg = _synth_config(quick)
    if _same_synth(data, scfg):
        print(f"kws ship: reusing the synthesised data in {data}", file=sys.stderr)
    else:
        print(f"kws ship: synthesising the default data into {data}", file=sys.stderr)
        synthesize(data, scfg, progress=False)
    synth_summary = json.loads((data / "synth.json").read_text())["summary"]
    outside = _outside_data(work / "outside-pico", quick)
    engines = scan_dataset(data, quiet=True).engines  # the rotation: every engine that spoke this data
    rows = []
    for name, preset in (("kws", "default"), ("kws-digits", "digits")):
        words = PRESETS[preset]
        cfg = KWSConfig(words=tuple(words))
        recipe = f"lstm-media kws train --data DATA --out RUN --preset {preset}  (defaults: {cfg.epochs} epochs, " \
                 f"batch {cfg.batch_size}, lr {cfg.lr:g}, {cfg.num_layers}x{cfg.hidden_size} LSTM, seed {cfg.seed})"
        if quick:
            words = words[:2]
            cfg = replace(cfg, words=tuple(words), epochs=1, hidden_size=16, num_layers=1, batch_size=8)
            recipe = f"quick test recipe: words {' '.join(words)}, 1 epoch, 1x16 LSTM, batch 8"
        run = work / name
        print(f"kws ship: training {name} ({recipe})", file=sys.stderr)
        summary = _train_or_reuse(data, run, cfg) if not quick else train(data, run, cfg, progress=False,
                                                                          resume=False, device="cpu")
        model, b = load(run / "best.pt", "cpu")
        held = {"test_accuracy": summary["test_accuracy"], "test_n": summary["test_n"],
                "test_telephone_accuracy": summary["test_telephone_accuracy"]}
        for e, v in sorted((summary.get("test_by_engine") or {}).items()):  # the by-voice test, engine by engine
            held[f"test_{e}_accuracy"], held[f"test_{e}_n"] = v["accuracy"], v["n"]
        loeo_seconds = 0.0
        for engine in (engines if loeo else ()):  # leave-one-engine-out: the same recipe without one engine
            run_e, cfg_e = work / f"{name}-without-{engine}", replace(cfg, holdout_engine=engine)
            if loeo == "finished" and _finished(run_e, cfg_e) is None:
                print(f"kws ship: {name} without {engine}: no finished run in {run_e}, not measured", file=sys.stderr)
                continue
            print(f"kws ship: {name} without {engine} (leave-one-engine-out)", file=sys.stderr)
            s = _train_or_reuse(data, run_e, cfg_e)
            held[f"loeo_{engine}_accuracy"] = s["holdout_engine"]["accuracy"]
            held[f"loeo_{engine}_n"] = s["holdout_engine"]["n"]
            loeo_seconds += s["train_seconds"]
        if outside is not None:  # an engine that neither this model nor any rotation trained on
            o = outside_engine_accuracy(run / "best.pt", outside)
            held["outside_pico_accuracy"], held["outside_pico_n"] = o["accuracy"], o["n"]
        # streaming detection over a long recording of held-out voices in noise
        wav = work / f"{name}-long.wav"
        truth = make_long_recording(data, wav, words, 16, 4, snr_db=15.0, seed=0)
        dcfg = DetectConfig.from_dict(b["extras"]["detect_config"])
        res = detect(model, b["labels"], load_audio(wav, sr=model.feature_config.sample_rate), dcfg)
        sc = score_detections(res["detections"], truth)
        held.update({"stream_keywords": sc["keywords"], "stream_hits": sc["hits"],
                     "stream_false_alarms": sc["false_alarms"], "stream_seconds": round(res["seconds_audio"], 1)})
        b["metrics"] = {**b["metrics"], "held_out": held}
        b["extras"] = {**b["extras"], "description": DESCRIPTIONS[name], "recipe": recipe}
        b["data"] = {**b["data"], "path": "synthesised by 'lstm-media kws synth' (default settings)"
                     if not quick else "quick test synthesis"}
        models_dir.mkdir(parents=True, exist_ok=True)
        path = bundle.save(bundle.for_shipping(b), models_dir / f"{name}.pt")
        path.chmod(0o644)  # package data: readable by every user once installed (the temp file was 0600)
        rows.append({"name": name, "kind": b["kind"],
                     "data": f"{synth_summary['clips']} synthesised clips of {synth_summary['voices']} "
                             f"voices of {', '.join(engines)} ({len(words)} keywords + unknown words + silence), "
                             "split by voice",
                     "recipe": recipe, "held_out": held, "train_seconds": summary["train_seconds"],
                     "loeo_train_seconds": round(loeo_seconds, 1),
                     "size_bytes": path.stat().st_size})
        print(f"kws ship: {name}: {json.dumps(held)}; {summary['train_seconds']} s; {path} "
              f"({path.stat().st_size} bytes)", file=sys.stderr)
    return rows


if __name__ == "__main__":  # python -m pipelines.kws.ship WORK MODELS_DIR [--quick]
    import argparse

    ap = argparse.ArgumentParser(description="build the shipped kws models")
    ap.add_argument("work")
    ap.add_argument("models_dir")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-loeo", action="store_true", help="skip the leave-one-engine-out trainings")
    ap.add_argument("--loeo-finished", action="store_true",
                    help="record the leave-one-engine-out runs already finished in WORK, train no others")
    a = ap.parse_args()
    t0 = time.time()
    out = ship(Path(a.work), Path(a.models_dir), a.quick, loeo="finished" if a.loeo_finished else not a.no_loeo)
    print(json.dumps({"rows": out, "seconds": round(time.time() - t0, 1)}, indent=1))
