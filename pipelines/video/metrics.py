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


# --- future-frame prediction scores (pixels in [0, 1]) -----------------------------------------------------

def _gauss_window(sigma: float = 1.5, truncate: float = 3.5):
    import torch

    r = int(truncate * sigma + 0.5)  # scipy's gaussian_filter radius: an 11-tap window for sigma 1.5
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def ssim(x, y, data_range: float = 1.0, sigma: float = 1.5):
    """Structural similarity (Wang et al. 2004) of images (..., C, H, W), averaged over channels and
    pixels: shape (...).

    The Gaussian-window form: sigma 1.5, 11x11 window, K1 = 0.01, K2 = 0.03, population (not sample)
    covariances, and the mean over the pixels whose window lies inside the image.  This equals
    ``skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1, channel_axis=-1)``.  Images must be at least 11x11.
    """
    import torch
    import torch.nn.functional as F

    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    lead, (C, H, W) = x.shape[:-3], x.shape[-3:]
    g = _gauss_window(sigma)
    k = len(g)
    if H < k or W < k:
        raise ValueError(f"SSIM needs images of at least {k}x{k}, got {H}x{W}")
    a, b = x.reshape(-1, 1, H, W), y.reshape(-1, 1, H, W)

    def blur(t):
        t = F.conv2d(t, g.view(1, 1, k, 1))
        return F.conv2d(t, g.view(1, 1, 1, k))

    mx, my = blur(a), blur(b)
    vx, vy, cxy = blur(a * a) - mx * mx, blur(b * b) - my * my, blur(a * b) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean((-3, -2, -1)).view(*lead, C).mean(-1)


def prediction_scores(pred, truth, context) -> dict:
    """Per-frame MSE and SSIM of predicted frames against the truth, and of two baselines.

    Args:
        pred, truth: (B, N, C, H, W) in [0, 1] (``pred`` is clamped here).
        context: (B, K, C, H, W), the frames the model saw: copy-last-frame repeats ``context[:, -1]``,
            mean-frame repeats the mean of the K context frames.
    Returns: ``{"mse", "ssim", "mse_copy_last", "ssim_copy_last", "mse_mean_frame", "ssim_mean_frame"``
    (averaged over clips and the horizon), the same per horizon step under ``"per_frame"``, and
    ``"n"``: clips, ``"pixels"``: values compared per method}.
    """
    import torch

    pred = pred.clamp(0, 1)
    N = truth.shape[1]
    last = context[:, -1:].expand_as(truth)
    mean = context.mean(1, keepdim=True).expand_as(truth)
    out: dict = {"per_frame": {}}
    for tag, p in (("", pred), ("_copy_last", last), ("_mean_frame", mean)):
        mse = ((p.double() - truth.double()) ** 2).mean((0, 2, 3, 4))  # (N,)
        ss = ssim(p, truth).mean(0)  # (N,)
        out[f"mse{tag}"] = float(mse.mean())
        out[f"ssim{tag}"] = float(ss.mean())
        out["per_frame"][f"mse{tag}"] = [round(float(v), 6) for v in mse]
        out["per_frame"][f"ssim{tag}"] = [round(float(v), 5) for v in ss]
    out["mse_vs_copy_last"] = out["mse"] / out["mse_copy_last"] if out["mse_copy_last"] > 0 else float("nan")
    out["n"] = int(truth.shape[0])
    out["horizon"] = int(N)
    out["pixels"] = int(truth.numel())
    return out


__all__ += ["ssim", "prediction_scores"]
