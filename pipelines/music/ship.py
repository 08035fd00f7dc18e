"""The shipped music model, ``music``: its exact recipe, from the corpus to ``pipelines/models/music.pt``.

Data: the music21 Bach chorales written to MIDI by :func:`.corpus.build_chorales` (offline: music21's own
corpus), split by the fixed hash rule of :mod:`.corpus` (about 80/10/10 % train/valid/test).
Model: ``music-lstm``, event tokens of the ``chorale`` vocabulary (4 steps per quarter) -> embedding 128 ->
2 x 256 LSTM -> softmax, about 1 M parameters (2 MB as fp16).  This is deliberately smaller than the
``train`` verb's default (2 x 384, 2.6 M parameters, which would not fit the 3 MB budget); ``train``'s
defaults are unchanged.  Training: truncated BPTT (32 streams x 64 tokens, state carried: about 80 updates
per epoch), random transposition within +-5 semitones, AdamW lr 3e-3 with warm-up and cosine decay,
``EPOCHS`` (20) epochs (about 8 minutes on a shared 2-core CPU), seed 0, CPU; best.pt by validation NLL.
(The first shipped recipe, 9 epochs of 32 x 128 tokens in 230 s, stopped at test NLL 1.37 nats/token,
far from the 0.92 of the 20-epoch run in benchmarks/results/music-acceptance.json.)

Held-out figures (``metrics["held_out"]``): NLL per token and perplexity on the test split (chorales never
seen in training, nor used for model selection) with the add-one unigram baseline on the same tokens; and,
labelled ``cross_corpus``, the same on folk tunes from a different corpus and genre (music21's Essen ballads
and O'Neill's 1850 Irish tunes, ABC converted by abc2midi), when abc2midi is installed.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from .. import bundle as _bundle
from .corpus import build_chorales, build_folk, corpus_files, folk_abc_files
from .inference import evaluate_bundle
from .train import MusicTrainConfig, train

NAME = "music"
EPOCHS = 20
RECIPE = MusicTrainConfig(model="music-lstm", preset="chorale",
                          model_kwargs={"embed_size": 128, "hidden_size": 256, "num_layers": 2, "dropout": 0.2},
                          epochs=EPOCHS, lr=3e-3, weight_decay=0.01, seed=0, n_streams=32, bptt=64,
                          max_transpose=5, progress=False, device="cpu")
# tiny version for the tests of this code only: a few chorales, a small model, one epoch
QUICK = MusicTrainConfig(model="music-lstm", preset="chorale",
                         model_kwargs={"embed_size": 16, "hidden_size": 32, "num_layers": 1, "dropout": 0.0},
                         epochs=1, lr=3e-3, seed=0, n_streams=4, bptt=64, max_transpose=2, progress=False,
                         device="cpu")
QUICK_LIMIT = 12  # music21's first 12 chorales: 8 train, 3 test, 1 valid under the hash rule
FOLK_FILES = ("essenFolksong/ballad10.abc", "oneills1850/0001-0050.abc", "oneills1850/0051-0100.abc")
DESCRIPTION = "Bach-chorale LSTM (event tokens, 2 x 256): writes four-part chorale-like MIDI"


def _folk_files(quick: bool) -> list[Path]:
    wanted = FOLK_FILES[1:2] if quick else FOLK_FILES
    return [f for f in folk_abc_files() if f"{f.parent.name}/{f.name}" in wanted]


def ship(work: Path, models_dir: Path, quick: bool = False) -> list[dict]:
    """Make the chorale corpus in ``work``, train the shipped model with the exact recipe, measure it on
    held-out data and write ``models_dir/music.pt`` (fp16, no resume state).  Returns the model-card row."""
    work, models_dir = Path(work), Path(models_dir)
    corpus = work / "chorales"
    c = build_chorales(corpus, QUICK_LIMIT if quick else None, workers=1 if quick else 2, progress=False)
    cfg = QUICK if quick else RECIPE
    run = work / "run"
    _log(f"music ship: corpus {corpus} {c['splits']} ({len(c['failed'])} scores music21 could not write); "
         f"training {cfg.model} for {cfg.epochs} epochs")
    t0 = time.time()
    res = train(corpus, run, cfg, resume=False, description=DESCRIPTION)
    train_seconds = time.time() - t0

    _log(f"music ship: trained {res['step']} steps in {train_seconds:.0f} s; measuring held-out figures")
    model, b = _bundle.load(run / "best.pt", "music", device="cpu")
    test = evaluate_bundle(model, b, corpus_files(corpus, "test"), progress=False, where=f"{corpus} [test split]")
    held = {"test_nll_per_token": test["nll_per_token"], "test_perplexity": test["perplexity"],
            "test_unigram_nll_per_token": test["unigram_nll_per_token"],
            "test_files": test["n_files"], "test_tokens": test["n_tokens"]}
    folk_note = "not measured (abc2midi not installed)"
    if shutil.which("abc2midi") is not None:
        folk_root = work / "folk"
        build_folk(folk_root, progress=False, abc_files=_folk_files(quick))
        folk = evaluate_bundle(model, b, corpus_files(folk_root), progress=False, where=f"{folk_root} (folk tunes)")
        held.update({"cross_corpus_folk_nll_per_token": folk["nll_per_token"],
                     "cross_corpus_folk_unigram_nll_per_token": folk["unigram_nll_per_token"],
                     "cross_corpus_folk_files": folk["n_files"]})
        folk_note = (f"cross-corpus: {folk['n_files']} folk tunes ({', '.join(FOLK_FILES[1:2] if quick else FOLK_FILES)}"
                     " from music21, ABC -> abc2midi), a different corpus and genre")
    b["metrics"]["held_out"] = held
    b["data"] = {**b["data"], "corpus_source": "music21 Bach chorales (corpus.chorales.Iterator, duplicates dropped)",
                 "splits": c["splits"], "held_out": f"test split: {test['n_files']} chorales never seen in training; "
                 + folk_note}
    b["extras"]["description"] = DESCRIPTION
    b["extras"]["recipe"] = "pipelines/music/ship.py" + (" (quick)" if quick else "")
    models_dir.mkdir(parents=True, exist_ok=True)
    path = _bundle.save(_bundle.for_shipping(b), models_dir / f"{NAME}.pt")
    _log(f"music ship: {path} ({path.stat().st_size} bytes): {held}")
    recipe = (f"music-lstm embed {cfg.model_kwargs['embed_size']}, {cfg.model_kwargs['num_layers']} x "
              f"{cfg.model_kwargs['hidden_size']}, dropout {cfg.model_kwargs['dropout']}; TBPTT {cfg.n_streams} streams x "
              f"{cfg.bptt} tokens; transpose +-{cfg.max_transpose}; AdamW lr {cfg.lr:g}, {cfg.epochs} epochs "
              f"({res['step']} steps), seed {cfg.seed}, CPU")
    return [{"name": NAME, "kind": "music", "data": f"music21 Bach chorales, {c['splits']['train']} train / "
             f"{c['splits']['valid']} valid / {c['splits']['test']} test files (hash split)",
             "recipe": recipe, "held_out": held, "train_seconds": round(train_seconds, 1),
             "size_bytes": path.stat().st_size, "parameters": res["n_params"]}]


def _log(msg: str) -> None:
    import sys

    print(msg, file=sys.stderr, flush=True)


__all__ = ["NAME", "RECIPE", "QUICK", "ship"]

if __name__ == "__main__":  # python -m pipelines.music.ship WORK MODELS_DIR [--quick]
    import argparse
    import json
    import sys

    ap = argparse.ArgumentParser(description="build the shipped music model")
    ap.add_argument("work")
    ap.add_argument("models_dir")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    t0 = time.time()
    rows = ship(Path(a.work), Path(a.models_dir), a.quick)
    print(json.dumps({"rows": rows, "seconds": round(time.time() - t0, 1)}, indent=1))
    sys.exit(0)
