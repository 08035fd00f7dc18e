"""Corpora of MIDI files: the music21 Bach chorales (and folk tunes through abc2midi) written as ``.mid``,
and the fixed train/valid/test split by file name.

Split rule (documented, stable across machines and corpus sizes): ``sha1(relative path)``'s first byte
modulo 10: 0 → test, 1 → valid, 2..9 → train (about 10/10/80 %).  ``corpus`` saves the lists as
``train.txt``/``valid.txt``/``test.txt``; a folder without lists is split by the same rule, so any folder
of ``.mid`` files is a corpus.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from multiprocessing import get_context
from pathlib import Path

from tqdm.auto import tqdm

from encoders.io.midi import list_midi

SPLITS = ("train", "valid", "test")


def split_of(rel_name: str) -> str:
    """Split of a file by its path relative to the corpus folder (posix form)."""
    b = hashlib.sha1(rel_name.encode("utf-8")).digest()[0] % 10
    return "test" if b == 0 else "valid" if b == 1 else "train"


def write_split_lists(root: str | Path) -> dict[str, int]:
    """Write ``train.txt``/``valid.txt``/``test.txt`` for every ``.mid`` under ``root``; returns counts."""
    root = Path(root)
    rels = [f.relative_to(root).as_posix() for f in list_midi([root])]
    lists = {s: [r for r in rels if split_of(r) == s] for s in SPLITS}
    for s, names in lists.items():
        (root / f"{s}.txt").write_text("".join(n + "\n" for n in names))
    return {s: len(v) for s, v in lists.items()}


def corpus_files(root: str | Path, split: str | None = None) -> list[Path]:
    """Files of ``split`` (None: all) in corpus folder ``root``: from its list if saved, else by rule."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such corpus folder")
    if split is None:
        return list_midi([root])
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    lst = root / f"{split}.txt"
    if lst.is_file():
        return [root / line.strip() for line in lst.read_text().splitlines() if line.strip()]
    return [f for f in list_midi([root]) if split_of(f.relative_to(root).as_posix()) == split]


def chorale_names() -> list[str]:
    """The distinct music21 chorale identifiers (``bach/bwv269``...), in music21's order.

    music21's Riemenschneider list has 371 entries but names 21 scores twice (the same chorale harmonised
    once, listed under two numbers): keeping them would put copies of one file in two splits."""
    from music21 import corpus

    return list(dict.fromkeys(str(n) for n in corpus.chorales.Iterator(returnType="filename")))


def _write_chorale(job: tuple[str, str]) -> tuple[str, str | None]:
    name, out = job
    try:
        from music21 import corpus

        corpus.parse(name).write("midi", fp=out)
        return name, None
    except Exception as e:  # noqa: BLE001 - one bad score must not stop the corpus
        return name, f"{name}: {type(e).__name__}: {e}".splitlines()[0]


def build_chorales(out: str | Path, limit: int | None = None, workers: int = 2, progress: bool = True) -> dict:
    """Write the music21 Bach chorales to ``out/<bwv>.mid`` (existing files are kept) and save the split lists.

    Args:
        limit: first N chorales only (music21's order), e.g. for a quick demo.
        workers: processes (writing all 371 takes ~90 s in one).
    Returns ``{"written", "kept", "failed": [...], "splits": {split: count}}``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = chorale_names()[:limit]
    jobs, kept = [], 0
    for n in names:
        f = out / (Path(n).name + ".mid")
        if f.is_file() and f.stat().st_size > 0:
            kept += 1
        else:
            jobs.append((n, str(f)))
    failed = []
    if jobs:
        bar = tqdm(total=len(jobs), desc="chorales → MIDI", disable=not progress, file=sys.stderr)
        if workers > 1:
            with get_context("spawn").Pool(workers) as pool:
                for _, err in pool.imap_unordered(_write_chorale, jobs, chunksize=4):
                    if err:
                        failed.append(err)
                    bar.update()
        else:
            for job in jobs:
                _, err = _write_chorale(job)
                if err:
                    failed.append(err)
                bar.update()
        bar.close()
    splits = write_split_lists(out)
    return {"written": len(jobs) - len(failed), "kept": kept, "failed": failed, "splits": splits}


def folk_abc_files() -> list[Path]:
    """The ABC files of music21's folk collections (Essen, O'Neill 1850, Ryan's Mammoth)."""
    import music21

    root = Path(music21.__file__).parent / "corpus"
    files = []
    for d in ("essenFolksong", "oneills1850", "ryansMammoth"):
        files += sorted((root / d).rglob("*.abc"))
    return files


def build_folk(out: str | Path, progress: bool = True, abc_files: list[Path] | None = None) -> dict:
    """Convert the folk tunes (default: :func:`folk_abc_files`) to ``out/folk/<collection>_<tune>.mid`` with
    abc2midi; re-save the split lists.  A file abc2midi cannot convert is counted in ``failed``."""
    if shutil.which("abc2midi") is None:
        raise RuntimeError("abc2midi not found (apt-get install abcmidi)")
    out = Path(out)
    dest = out / "folk"
    dest.mkdir(parents=True, exist_ok=True)
    failed, written = [], 0
    for abc in tqdm(folk_abc_files() if abc_files is None else abc_files, desc="folk ABC → MIDI", disable=not progress, file=sys.stderr):
        with tempfile.TemporaryDirectory() as tmp:
            # abc2midi writes <stem><X>.mid beside the file it reads: give it a private copy
            shutil.copyfile(abc, Path(tmp) / "tunes.abc")
            r = subprocess.run(["abc2midi", "tunes.abc", "-silent"], cwd=tmp, capture_output=True, text=True)
            mids = sorted(Path(tmp).glob("*.mid"))
            if not mids:
                failed.append(f"{abc}: abc2midi wrote nothing (rc {r.returncode})")
            for m in mids:
                shutil.move(str(m), dest / f"{abc.parent.name}_{abc.stem}_{m.stem[len('tunes'):]}.mid")
                written += 1
    return {"written": written, "failed": failed, "splits": write_split_lists(out)}


__all__ = ["SPLITS", "split_of", "write_split_lists", "corpus_files", "chorale_names", "build_chorales",
           "folk_abc_files", "build_folk"]
