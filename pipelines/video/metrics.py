"""Caption scores: BLEU-4 and CIDEr from pycocoevalcap (no Java needed), METEOR when Java is present,
and exact match.  Captions are lower-cased and split by :func:`pipelines.video.data.tokenize` (the
PTB tokenizer of pycocoevalcap needs Java)."""
from __future__ import annotations

import shutil

from .data import tokenize


def _norm(c: str) -> str:
    return " ".join(tokenize(c))


def caption_scores(predictions: dict, references: dict[object, list[str]], meteor: bool = True) -> dict:
    """Score ``predictions {id: caption}`` against ``references {id: [captions]}`` (ids in both).

    Returns ``{"bleu4", "cider", "exact_match", "n"}`` plus ``"meteor"`` when Java is available.
    Exact match: the prediction equals one of the references after tokenisation.
    """
    ids = [i for i in predictions if references.get(i)]
    if not ids:
        return {"bleu4": 0.0, "cider": 0.0, "exact_match": 0.0, "n": 0}
    res = {k: [_norm(predictions[i]) or "<empty>"] for k, i in enumerate(ids)}
    gts = {k: [_norm(r) for r in references[i]] for k, i in enumerate(ids)}
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    exact = sum(res[k][0] in gts[k] for k in res) / len(res)
    out = {"bleu4": float(bleu[3]), "cider": float(cider), "exact_match": float(exact), "n": len(ids)}
    if meteor and shutil.which("java"):
        try:
            from pycocoevalcap.meteor.meteor import Meteor

            out["meteor"] = float(Meteor().compute_score(gts, res)[0])
        except Exception:  # noqa: BLE001 - METEOR is optional extra information
            pass
    return out


__all__ = ["caption_scores"]
