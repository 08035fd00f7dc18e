"""The `lstm-media` command itself: models, info, the error contract, devices, and the shipped bundles."""
import argparse
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from pipelines import bundle
from pipelines.cli import main
from pipelines.cli_common import UserError, apply_runtime, check_output, positive_int, probability

MODELS = Path(bundle.SHIPPED_DIR)
SHIPPED = sorted(p.stem for p in MODELS.glob("*.pt"))


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    """A real bundle written through the trainer (the long-memory job, a few steps)."""
    from pipelines.long_memory import AddingData, AddingRegressor
    from pipelines.trainer import TrainConfig, Trainer

    out = tmp_path_factory.mktemp("tiny")
    meta = bundle.make_meta("long-memory", "adding-regressor", {"cell": "lstm", "hidden_size": 4},
                            front_end={"inputs": ["value", "marker"]}, data={"T": 20})
    tc = TrainConfig(epochs=1, batch_size=16, progress=False)
    Trainer(AddingRegressor("lstm", 4), tc, AddingData(32, 20, 0), out,
            lambda m, b: nn.functional.mse_loss(m(b[0], b[1]), b[2]), collate_fn=lambda b: b, bundle=meta).fit()
    return out / "best.pt"


def test_info_describes_a_trained_bundle(capsys, tiny_bundle):
    code, out, err = run(capsys, "info", str(tiny_bundle), "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["kind"] == "long-memory" and d["model"] == "adding-regressor" and d["resumable"]
    assert d["model_config"]["hidden_size"] == 4 and d["train"]["batch_size"] == 16
    assert d["versions"]["torch"] == str(torch.__version__) and d["parameters"] > 0
    code, out, _ = run(capsys, "info", str(tiny_bundle))
    assert code == 0 and "long-memory checkpoint, model adding-regressor" in out


@pytest.mark.parametrize("content", ["tensor", "module", "text", "empty", "foreign-dict"])
def test_info_on_what_is_not_a_bundle_is_one_line(capsys, tmp_path, content):
    p = tmp_path / "x.pt"
    if content == "tensor":
        torch.save(torch.ones(3), p)
    elif content == "module":
        torch.save({"m": nn.Linear(2, 2)}, p)  # unpickling it would run code: refused
    elif content == "text":
        p.write_text("hello")
    elif content == "empty":
        p.write_bytes(b"")
    else:
        torch.save({"model": {}, "extra": {}}, p)  # an old-format checkpoint
    code, out, err = run(capsys, "info", str(p))
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"error: {p}") and "Traceback" not in err


def test_missing_checkpoint_and_folder_are_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "info", str(tmp_path / "nope.pt"))
    assert code == 1 and err.startswith("error: ") and "nope.pt" in err and err.count("\n") == 1
    code, _, err = run(capsys, "info", str(tmp_path))
    assert code == 1 and "is a folder" in err


def test_wrong_kind_is_named(tmp_path, tiny_bundle):
    with pytest.raises(bundle.BundleError, match=r"is a long-memory checkpoint; 'lstm-media kws predict' needs a kws"):
        bundle.load(tiny_bundle, kind="kws", command="lstm-media kws predict")


def test_unknown_subcommand_and_bad_numbers_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as e:
        main(["long-memory", "--T", "0"])
    assert e.value.code == 2
    for parse, bad in ((positive_int, "0"), (positive_int, "x"), (probability, "0"), (probability, "nan")):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(bad)
    assert probability("1") == 1.0


def test_devices(monkeypatch):
    assert apply_runtime(argparse.Namespace(device="cpu", threads=1)) == "cpu"
    if not torch.cuda.is_available():
        assert apply_runtime(argparse.Namespace(device="auto", threads=None)) == "cpu"
        with pytest.raises(UserError, match="--device cuda: no CUDA device"):
            apply_runtime(argparse.Namespace(device="cuda", threads=None))


def test_outputs_never_replace_inputs(tmp_path):
    src = tmp_path / "in.wav"
    src.write_bytes(b"RIFF")
    with pytest.raises(UserError, match="one of the command's inputs"):
        check_output(src, [src], overwrite=True)
    with pytest.raises(UserError, match="exists; refusing to overwrite"):
        check_output(src, [])
    assert check_output(tmp_path / "sub" / "new.csv", [src]) == tmp_path / "sub" / "new.csv"
    assert src.read_bytes() == b"RIFF"


def test_models_lists_every_shipped_bundle(capsys):
    code, out, err = run(capsys, "models", "--json")
    assert code == 0, err
    rows = json.loads(out)["models"]
    assert [r["name"] for r in rows] == SHIPPED


@pytest.mark.skipif(not SHIPPED, reason="no shipped models in this checkout")
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_bundle_loads_with_its_figures(name):
    path = MODELS / f"{name}.pt"
    assert path.stat().st_size <= 3 * 1024 * 1024
    model, b = bundle.load(name)
    assert b["path"] == str(path) and "trainer" not in b
    assert b["metrics"].get("held_out") and b["extras"].get("description")
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp16 storage widened on load
    assert not bundle.non_finite(model.state_dict())


def test_shipped_models_fit_the_package_budget():
    assert sum(p.stat().st_size for p in MODELS.glob("*.pt")) <= 10 * 1024 * 1024
