"""Session-scoped fixtures shared by the CLI tests: tiny data and tiny trained bundles, made once per run.
Each job's fixtures carry its prefix (``music_``...)."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


# --- music -------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def music_corpus(tmp_path_factory) -> Path:
    """The five chorales of tests/data/music as a corpus: 4 train, 1 valid (= test)."""
    corpus = tmp_path_factory.mktemp("music") / "corpus"
    corpus.mkdir()
    src = ROOT / "tests" / "data" / "music"
    for f in src.glob("*.mid"):
        (corpus / f.name).write_bytes(f.read_bytes())
    files = sorted(f.name for f in corpus.glob("*.mid"))
    (corpus / "train.txt").write_text("\n".join(files[:4]) + "\n")
    (corpus / "valid.txt").write_text(files[4] + "\n")
    (corpus / "test.txt").write_text(files[4] + "\n")
    return corpus


MUSIC_TINY = ["--hidden", "24", "--layers", "1", "--embed", "16", "--streams", "4", "--bptt", "32",
              "--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="session")
def music_run(music_corpus) -> Path:
    """A run folder (best.pt, last.pt) of a tiny music-lstm trained 2 epochs through the real CLI."""
    from pipelines.music.cli import main

    run = music_corpus.parent / "run"
    rc = main(["train", "--data", str(music_corpus), "--out", str(run), "--epochs", "2", *MUSIC_TINY])
    assert rc == 0 and (run / "best.pt").is_file()
    return run


# --- kws streaming (live / export tests) ----------------------------------------------------------------
@pytest.fixture(scope="session")
def kws_stream_recording(tmp_path_factory) -> Path:
    """A short recording of held-out synthesised voices saying yes/no over noise (``stream-wav`` of a tiny
    ``synth`` set, both through the real CLI), with its truth .json beside it."""
    from pipelines.kws.cli import main

    d = tmp_path_factory.mktemp("kws_stream")
    rc = main(["synth", "--out", str(d / "data"), "--words", "yes", "no", "--engines", "espeak", "flite",
               "--variants-per-accent", "1", "--flite-variants", "1", "--espeak-takes", "1"])
    assert rc == 0
    wav = d / "long.wav"
    rc = main(["stream-wav", "--data", str(d / "data"), "--out", str(wav), "--words", "yes", "no", "--keywords", "6",
               "--unknown", "0"])
    assert rc == 0 and wav.is_file()
    return wav
