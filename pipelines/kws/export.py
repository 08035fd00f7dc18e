"""Streaming export of a keyword-spotting model (ONNX or TorchScript, float or int8) and the engines that
run an exported folder.

The exported model is one streaming step with the front end inside and the recurrent state explicit::

    inputs   audio (B, N)        float32, N new samples at 16 kHz, N a multiple of ``step_samples``
                                 (480: one 30 ms LSTM step = 3 frames of 10 ms); any such N (dynamic)
             tail  (B, 352)      the 352 (= n_fft - hop) samples before ``audio``; at the start of a
                                 stream: its first 352 samples (then ``audio`` starts right after them)
             h, c  (L, B, H)     LSTM state; zeros at the start of a stream
    outputs  posteriors (B, N / 480, C)   softmax over the labels, one row per 30 ms step
             tail_out, h_out, c_out       the state to pass to the next call

The front end (framing, Hann window and DFT as one matrix product, power, mel bank, log, DCT, the training
statistics' normalisation) is part of the graph, so a caller needs nothing but audio.  Frame ``t`` of
the stream covers samples ``[t*160, t*160 + 512)``, exactly as in PyTorch, so the posteriors equal the
PyTorch model's (to float rounding) and so do the detections.

``--int8``: dynamic quantisation of the LSTM and the output layer (weights int8, activations
quantised on the fly); the front end stays float.  ONNX: ``onnxruntime.quantization.quantize_dynamic``;
TorchScript: ``torch.ao.quantization.quantize_dynamic``.

The folder holds ``model.onnx`` or ``model.pt`` and ``meta.json`` (labels, detection settings, front
end, shapes), which is all ``lstm-media kws detect --engine onnx --checkpoint DIR`` reads.
"""
from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from encoders.audio import FeatureConfig

from ..cli_common import UserError, check_output, write_text_atomic
from .model import ema

FORMATS = ("onnx", "torchscript")
FILES = {"onnx": "model.onnx", "torchscript": "model.pt"}
META = "meta.json"
META_FORMAT = "lstm-media-kws-stream"


def deploy_missing() -> str | None:
    """None when the ONNX tools (the ``[deploy]`` extra) are importable, else what is missing."""
    missing = []
    for mod in ("onnx", "onnxruntime"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    return ", ".join(missing) or None


class StreamStep(nn.Module):
    """One streaming step of a :class:`pipelines.kws.model.KWSLSTM`: (audio, tail, h, c) ->
    (posteriors, tail, h, c), front end included (see the module docstring)."""

    def __init__(self, model):
        super().__init__()
        from encoders.audio import _tables

        if getattr(model, "bidirectional", False):
            raise UserError("a bidirectional model needs whole clips and cannot stream; nothing to export")
        fc = model.feature_config
        object.__setattr__(self, "fc", fc)  # a Python-side attribute (not part of the scripted module)
        self.hop, self.n_fft, self.stack = fc.hop_length, fc.n_fft, int(getattr(model, "stack", 1))
        self.overlap = self.n_fft - self.hop
        win, fb, dct = _tables(fc)
        # the DFT as one product with the window folded in, for the bins the mel bank reads only
        used = torch.nonzero(fb.abs().sum(1) > 0).flatten()
        lo, hi = int(used.min()), int(used.max()) + 1
        self.register_buffer("offsets", torch.arange(self.n_fft).unsqueeze(0))  # sample offsets inside a frame
        self.register_buffer("bins", torch.arange(lo, hi).unsqueeze(0))  # (1, K)
        self.register_buffer("win_col", win.float().unsqueeze(1))  # (n_fft, 1)
        self.register_buffer("basis", self.dft_basis())  # ONNX: rebuilt in the graph (see _basis_in_graph)
        self.register_buffer("fb", fb[lo:hi].float().contiguous())
        self.n_bins = hi - lo
        std, mean = model.feat_std.detach().float().cpu(), model.feat_mean.detach().float().cpu()
        base = dct.float() if fc.kind == "mfcc" else torch.eye(fc.n_mels)
        self.register_buffer("proj", 10.0 * base / std)  # (x - mean) / std of 10 log10(mel) @ dct
        self.register_buffer("shift", -mean / std)
        src = model.lstm
        self.lstm = nn.LSTM(src.input_size, src.hidden_size, src.num_layers, batch_first=True)
        self.lstm.load_state_dict({k: v.detach().float().cpu() for k, v in src.state_dict().items()
                                   if k.startswith(("weight_", "bias_"))})
        self.head = nn.Linear(model.head.in_features, model.head.out_features)
        self.head.load_state_dict({k: v.detach().float().cpu() for k, v in model.head.state_dict().items()})
        self.amin = float(fc.amin)
        # causal mean normalisation (the model's cmn_frames): its running mean m is one more state (B, D)
        self.cmn = int(getattr(model, "cmn_frames", 0))
        self.eval()

    def dft_basis(self) -> torch.Tensor:
        """(n_fft, 2K): Hann window times cos / -sin of the used bins.  The phase index n*k is reduced mod
        n_fft in integers first, so the float angle stays below 2 pi and exact to float rounding."""
        m = (self.offsets.t() * self.bins) % self.n_fft  # (n_fft, K) integers
        ang = m.to(torch.float32) * (2.0 * 3.141592653589793 / self.n_fft)
        return torch.cat([torch.cos(ang), -torch.sin(ang)], 1) * self.win_col

    def forward(self, audio: torch.Tensor, tail: torch.Tensor, h: torch.Tensor, c: torch.Tensor, m: torch.Tensor):
        x = torch.cat([tail, audio], 1)
        t = (x.shape[1] - self.overlap) // self.hop  # frames: frame k = samples [k*hop, k*hop + n_fft)
        frames = x[:, torch.arange(t).unsqueeze(1) * self.hop + self.offsets]  # (B, T, n_fft)
        spec = torch.matmul(frames, self.basis)  # (B, T, 2K): windowed DFT, real and imaginary parts
        re, im = spec[..., : self.n_bins], spec[..., self.n_bins:]
        power = re * re + im * im
        mel = torch.matmul(power, self.fb).clamp(min=self.amin)
        feats = torch.matmul(torch.log10(mel), self.proj) + self.shift  # (B, T, D), normalised
        m_out = m
        if self.cmn > 0:  # the model's own running mean (KWSLSTM.running_mean), started from the state m
            run = ema(feats, self.cmn, m)
            feats = feats - run
            m_out = run[:, -1]
        steps = feats.reshape(feats.shape[0], -1, feats.shape[2] * self.stack)
        out, (h2, c2) = self.lstm(steps, (h, c))
        post = torch.softmax(self.head(out), -1)
        return post, x[:, x.shape[1] - self.overlap:], h2, c2, m_out

    def example(self, batch: int = 1, steps: int = 2):
        L, H = self.lstm.num_layers, self.lstm.hidden_size
        g = torch.Generator().manual_seed(0)
        return (torch.randn(batch, steps * self.hop * self.stack, generator=g) * 0.1,
                torch.randn(batch, self.overlap, generator=g) * 0.1, torch.zeros(L, batch, H), torch.zeros(L, batch, H),
                torch.zeros(batch, self.proj.shape[1]))


def _meta(step: StreamStep, bundle: dict, fmt: str, int8: bool) -> dict:
    from .stream import DetectConfig

    det = DetectConfig.from_dict({**DetectConfig().to_dict(), **(bundle["extras"].get("detect_config") or {})})
    return {"format": META_FORMAT, "version": 2, "engine": fmt, "file": FILES[fmt], "int8": bool(int8),
            "labels": list(bundle["labels"]), "front_end": step.fc.to_dict(), "stack": step.stack,
            "step_samples": step.hop * step.stack, "tail_samples": step.overlap,
            "num_layers": step.lstm.num_layers, "hidden_size": step.lstm.hidden_size,
            "detect_config": det.to_dict(), "source": Path(str(bundle.get("path", ""))).name,
            "inputs": {"audio": "(B, N) float32, N a multiple of step_samples", "tail": "(B, tail_samples)",
                       "h": "(num_layers, B, hidden_size)", "c": "(num_layers, B, hidden_size)",
                       "m": "(B, n_features) running feature mean (zeros to start; carried only when cmn_frames > 0)"},
            "outputs": {"posteriors": "(B, N / step_samples, len(labels))", "tail_out": "as tail",
                        "h_out": "as h", "c_out": "as c", "m_out": "as m"},
            "cmn_frames": step.cmn, "n_features": int(step.proj.shape[1])}


def _basis_in_graph(m, step: StreamStep):
    """Replace the (n_fft, 2K) DFT-basis initializer by the few nodes that compute it from the bin numbers and
    the window (as :meth:`StreamStep.dft_basis`): onnxruntime folds them once when it loads the model, and
    the file does not carry 1 MB of cos / sin."""
    from onnx import TensorProto, helper, numpy_helper

    ref = step.basis.numpy()
    hits = [i for i in m.graph.initializer if tuple(i.dims) == ref.shape
            and np.array_equal(numpy_helper.to_array(i), ref)]
    if len(hits) != 1:
        return m  # not found as one constant: leave the graph as it is
    name = hits[0].name
    m.graph.initializer.remove(hits[0])
    p = f"{name}_"

    def const(key, arr):
        return helper.make_node("Constant", [], [p + key], value=numpy_helper.from_array(arr, p + key + "_v"))

    nodes = [const("n", step.offsets.t().numpy().astype(np.int64)), const("k", step.bins.numpy().astype(np.int64)),
             const("nfft", np.array(step.n_fft, np.int64)),
             const("scale", np.array(2.0 * np.pi / step.n_fft, np.float32)),
             const("win", step.win_col.numpy().astype(np.float32)),
             helper.make_node("Mul", [p + "n", p + "k"], [p + "nk"]),
             helper.make_node("Mod", [p + "nk", p + "nfft"], [p + "m"]),
             helper.make_node("Cast", [p + "m"], [p + "mf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", [p + "mf", p + "scale"], [p + "ang"]),
             helper.make_node("Cos", [p + "ang"], [p + "cos"]),
             helper.make_node("Sin", [p + "ang"], [p + "sin"]),
             helper.make_node("Neg", [p + "sin"], [p + "nsin"]),
             helper.make_node("Concat", [p + "cos", p + "nsin"], [p + "cs"], axis=1),
             helper.make_node("Mul", [p + "cs", p + "win"], [name])]
    for i, nd in enumerate(nodes):
        m.graph.node.insert(i, nd)
    return m


def _export_onnx(step: StreamStep, path: Path, int8: bool) -> None:
    import onnx

    tmp = path.with_name(f".{path.name}.fp32.tmp")
    dyn = {"audio": {0: "batch", 1: "samples"}, "tail": {0: "batch"}, "h": {1: "batch"}, "c": {1: "batch"},
           "m": {0: "batch"}, "posteriors": {0: "batch", 1: "steps"}, "tail_out": {0: "batch"}, "h_out": {1: "batch"},
           "c_out": {1: "batch"}, "m_out": {0: "batch"}}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(step, step.example(), str(tmp), dynamo=False, opset_version=17,
                              input_names=["audio", "tail", "h", "c", "m"],
                              output_names=["posteriors", "tail_out", "h_out", "c_out", "m_out"], dynamic_axes=dyn)
        m = _basis_in_graph(onnx.load(str(tmp)), step)
        onnx.checker.check_model(m)
        onnx.save(m, str(tmp))
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            graph = onnx.load(str(tmp)).graph
            # the LSTM and the output layer; the front end (DFT, mel bank, DCT) stays float
            nodes = [nd.name for nd in graph.node if nd.op_type in ("LSTM", "MatMul", "Gemm")
                     and ("lstm" in nd.name.lower() or "head" in nd.name.lower())]
            qtmp = path.with_name(f".{path.name}.int8.tmp")
            logging.disable(logging.WARNING)  # its advice to pre-process applies to static quantisation
            try:
                quantize_dynamic(str(tmp), str(qtmp), weight_type=QuantType.QInt8, nodes_to_quantize=nodes)
            finally:
                logging.disable(logging.NOTSET)
            qtmp.replace(path)
        else:
            tmp.replace(path)
    finally:
        for t in (tmp, path.with_name(f".{path.name}.int8.tmp")):
            if t.exists():
                t.unlink()


def _export_torchscript(step: StreamStep, path: Path, int8: bool) -> None:
    with warnings.catch_warnings():  # torch.ao / torch.jit deprecation notices
        warnings.simplefilter("ignore")
        mod = torch.ao.quantization.quantize_dynamic(step, {nn.LSTM, nn.Linear}, dtype=torch.qint8) if int8 else step
        scripted = torch.jit.script(mod)
    tmp = path.with_name(f".{path.name}.tmp")
    scripted.save(str(tmp))
    tmp.replace(path)


def export(checkpoint, out: str | Path, fmt: str = "onnx", int8: bool = False, overwrite: bool = False) -> dict:
    """Write the streaming model of a kws checkpoint (a file or shipped name) into folder ``out``.
    Returns ``{"out", "file", "bytes", "format", "int8", "max_abs_diff"}`` (the export checked against
    PyTorch on random audio)."""
    from .train import load

    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: use one of {', '.join(FORMATS)}")
    if fmt == "onnx" and deploy_missing():
        raise UserError(f"--format onnx needs {deploy_missing()} (pip install 'lstm-media[deploy]', or make setup)")
    model, b = load(checkpoint, "cpu", "lstm-media kws export")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; name a folder")
    src = Path(b["path"]) if b.get("path") else None
    target = check_output(out / FILES[fmt], [src], overwrite)
    meta_path = check_output(out / META, [src], overwrite)
    step = StreamStep(model)
    (_export_onnx if fmt == "onnx" else _export_torchscript)(step, target, int8)
    meta = _meta(step, b, fmt, int8)
    write_text_atomic(meta_path, json.dumps(meta, indent=1))
    # check: the exported step against PyTorch on the example input
    eng = load_engine(out)
    with torch.inference_mode():
        ref = step(*step.example())[0].numpy()
    got = eng.run_raw(*[t.numpy() for t in step.example()])[0]
    return {"out": str(out), "file": str(target), "bytes": target.stat().st_size, "format": fmt, "int8": bool(int8),
            "labels": meta["labels"], "max_abs_diff": float(np.abs(ref - got).max())}


# --- engines over an exported folder -------------------------------------------------------------------
class ExportedEngine:
    """An exported folder as a streaming engine for :class:`pipelines.kws.stream.StreamingDetector`:
    ``posteriors(samples)`` -> (S, C) of the 30 ms steps completed, the tail and LSTM state carried
    through the model's own state inputs/outputs."""

    def __init__(self, folder: str | Path, meta: dict, threads: int | None = None):
        self.folder, self.meta = Path(folder), meta
        self.fc = FeatureConfig.from_dict(meta["front_end"])
        self.stack, self.labels = int(meta["stack"]), list(meta["labels"])
        self.step, self.overlap = int(meta["step_samples"]), int(meta["tail_samples"])
        self.L, self.H = int(meta["num_layers"]), int(meta["hidden_size"])
        self.has_m = int(meta.get("version", 1)) >= 2  # version 1 exports had no running-mean state
        self.D = int(meta.get("n_features", self.fc.n_features))
        self.empty = np.zeros((0, len(self.labels)), np.float32)
        self.threads = threads
        self.reset()

    def reset(self) -> None:
        self.pending = np.zeros(0, np.float32)
        self.tail = None
        self.h = np.zeros((self.L, 1, self.H), np.float32)
        self.c = np.zeros((self.L, 1, self.H), np.float32)
        self.m = np.zeros((1, self.D), np.float32)

    def posteriors(self, samples) -> np.ndarray:
        x = np.asarray(samples.numpy() if isinstance(samples, torch.Tensor) else samples, np.float32).reshape(-1)
        buf = np.concatenate([self.pending, x]) if len(self.pending) else x
        if self.tail is None:  # the stream's first samples become the first tail
            if len(buf) < self.overlap:
                self.pending = buf.copy()
                return self.empty
            self.tail, buf = buf[None, : self.overlap].copy(), buf[self.overlap:]
        n = len(buf) // self.step * self.step
        self.pending = buf[n:].copy()
        if n == 0:
            return self.empty
        post, self.tail, self.h, self.c, self.m = self.run_state(buf[None, :n], self.tail, self.h, self.c, self.m)
        return post[0]

    def run_state(self, audio, tail, h, c, m):
        """run_raw with the running-mean state when the export has one (version 2), passed through otherwise."""
        if self.has_m:
            return self.run_raw(audio, tail, h, c, m)
        return (*self.run_raw(audio, tail, h, c), m)

    def clip_posteriors(self, waves: np.ndarray, batch: int = 256) -> np.ndarray:
        """(M, n) whole clips -> (M, C) posteriors of each clip's last step (as the model's forward)."""
        out = []
        n = (waves.shape[1] - self.overlap) // self.step * self.step
        for i in range(0, len(waves), batch):
            w = np.ascontiguousarray(waves[i: i + batch], np.float32)
            z = np.zeros((self.L, len(w), self.H), np.float32)
            zm = np.zeros((len(w), self.D), np.float32)
            out.append(self.run_state(w[:, self.overlap: self.overlap + n], w[:, : self.overlap], z, z, zm)[0][:, -1])
        return np.concatenate(out)


class OnnxEngine(ExportedEngine):
    def __init__(self, folder, meta, threads=None):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or 1
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(Path(folder) / meta["file"]), so, providers=["CPUExecutionProvider"])
        super().__init__(folder, meta, threads)

    def run_raw(self, audio, tail, h, c, m=None):
        feed = {"audio": audio, "tail": tail, "h": h, "c": c}
        if m is not None:
            feed["m"] = m
        return self.session.run(None, feed)


class TorchScriptEngine(ExportedEngine):
    def __init__(self, folder, meta, threads=None):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.module = torch.jit.load(str(Path(folder) / meta["file"]), map_location="cpu").eval()
        if meta.get("int8"):  # torch's dynamic int8 LSTM warns about its own deprecation on every new shape
            warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        super().__init__(folder, meta, threads)

    @torch.inference_mode()
    def run_raw(self, audio, tail, h, c, m=None):
        # no profiling re-optimisation per new block length: the graph is already what it should run
        args = (audio, tail, h, c) if m is None else (audio, tail, h, c, m)
        with torch.jit.optimized_execution(False):
            return [t.numpy() for t in self.module(*(torch.from_numpy(np.ascontiguousarray(a)) for a in args))]


def read_meta(folder: str | Path) -> dict:
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: not an exported folder (lstm-media kws export CHECKPOINT --out DIR writes one)")
    p = folder / META
    try:
        meta = json.loads(p.read_text())
    except (OSError, ValueError):
        raise UserError(f"{folder}: no readable {META}; not a folder written by lstm-media kws export") from None
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT or meta.get("engine") not in FORMATS:
        raise UserError(f"{p}: not an lstm-media kws export description")
    if not (folder / meta["file"]).is_file():
        raise UserError(f"{folder / meta['file']}: missing (export the model again)")
    return meta


def load_engine(folder: str | Path, engine: str | None = None, threads: int | None = None) -> ExportedEngine:
    """The engine of an exported folder; ``engine`` (onnx / torchscript), when given, must match it."""
    meta = read_meta(folder)
    if engine is not None and meta["engine"] != engine:
        raise UserError(f"{folder} is an export for --engine {meta['engine']}, not {engine}")
    if meta["engine"] == "onnx":
        if deploy_missing():
            raise UserError(f"--engine onnx needs {deploy_missing()} (pip install 'lstm-media[deploy]', or make setup)")
        return OnnxEngine(folder, meta, threads)
    return TorchScriptEngine(folder, meta, threads)


__all__ = ["StreamStep", "export", "load_engine", "read_meta", "OnnxEngine", "TorchScriptEngine", "deploy_missing",
           "FORMATS"]
