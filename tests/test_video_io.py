"""Video decoding: every codec we write, frame counts from decoding, and bad inputs."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from encoders.io import DecodeError
from encoders.io.video import CODECS, iter_frames, list_videos, probe_video, read_video, write_video
from encoders.video import VideoFrontEndConfig, load_clip, sample_clip

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg executable missing")


def ramp_frames(n=12, h=48, w=64):
    """A bright square sliding right over a dark background; frame k is also k-dependent in colour."""
    f = np.zeros((n, h, w, 3), np.uint8)
    f[..., :] = (20, 40, 60)
    for k in range(n):
        x = 4 + 3 * k
        f[k, 16:32, x:x + 16] = (230, 200, 40)
    return f


def square_x(frame):
    """Column of the centre of the bright square."""
    mask = frame.astype(int).sum(-1) > 300
    return np.nonzero(mask.any(0))[0].mean()


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_decode_each_codec(tmp_path, codec):
    if codec == "h264" and shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg missing")
    src = ramp_frames()
    path = write_video(tmp_path / f"clip{CODECS[codec][1]}", src, fps=10, codec=codec)
    frames, times = read_video(path)
    assert frames.shape == src.shape and frames.dtype == np.uint8
    assert np.allclose(np.diff(times), 0.1, atol=1e-3)
    # lossy codecs: colours and the square's position survive
    assert np.abs(frames.astype(int) - src.astype(int)).mean() < 12
    xs = [square_x(f) for f in frames]
    assert np.allclose(xs, [square_x(f) for f in src], atol=1.5)
    assert probe_video(path).frames == len(src)


def test_frame_count_comes_from_decoding_not_header(tmp_path):
    path = write_video(tmp_path / "a.avi", ramp_frames(20), fps=10, codec="mjpg")
    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.55)])  # header still claims 20 frames
    info = probe_video(cut)
    assert info.header_frames == 20
    assert 1 <= info.frames < 20
    frames, _ = read_video(cut)
    assert len(frames) == info.frames  # a truncated AVI gives its good prefix: a sensible result


def test_unreadable_file_one_line_error(tmp_path):
    bad = tmp_path / "noise.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(DecodeError) as e:
        read_video(bad)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("kind", ["empty", "missing", "zero_frames", "truncated_mp4"])
def test_bad_files_raise_decode_error(tmp_path, kind):
    import cv2

    p = tmp_path / "bad.mp4"
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "zero_frames":
        w = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
        w.release()
    elif kind == "truncated_mp4":  # opencv's mp4 keeps its index (moov) at the end: cut it off
        good = write_video(tmp_path / "good.mp4", ramp_frames(), codec="mp4v").read_bytes()
        p.write_bytes(good[: len(good) // 2])
    with pytest.raises(DecodeError) as e:
        load_clip(p, VideoFrontEndConfig())
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_single_frame_clip_is_repeated(tmp_path):
    p = write_video(tmp_path / "one.avi", ramp_frames(1), codec="mjpg")
    x = load_clip(p, VideoFrontEndConfig(num_frames=8, size=(16, 16)))
    assert x.shape == (8, 3, 16, 16)
    assert all((x[k] == x[0]).all() for k in range(8))


def test_grayscale_video_gives_three_equal_channels(tmp_path):
    gray = ramp_frames(6).mean(-1).astype(np.uint8)  # (N, H, W)
    p = write_video(tmp_path / "gray.avi", gray, codec="mjpg")
    frames, _ = read_video(p)
    assert frames.shape == (6, 48, 64, 3)
    assert np.abs(frames[..., 0].astype(int) - frames[..., 2].astype(int)).max() <= 2
    assert np.abs(frames[..., 0].astype(int) - gray.astype(int)).mean() < 8


@needs_ffmpeg
def test_grayscale_h264_pix_fmt_gray(tmp_path):
    p = tmp_path / "g.mkv"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=64x48:rate=10:duration=1", "-pix_fmt", "gray", "-c:v", "ffv1", str(p)], check=True)
    x = sample_clip(p, VideoFrontEndConfig(num_frames=4, size=(24, 24)))
    assert x.shape == (4, 24, 24, 3)
    assert (x[..., 0] == x[..., 1]).all() and (x[..., 1] == x[..., 2]).all()


def test_huge_resolution_is_shrunk_while_decoding(tmp_path):
    big = np.zeros((2, 2160, 3840, 3), np.uint8)
    big[:, :, 1920:] = 200
    p = write_video(tmp_path / "big.avi", big, codec="mjpg")
    frames, _ = read_video(p)  # default: the long side shrunk to 1024
    assert frames.shape == (2, 576, 1024, 3)
    x = sample_clip(p, VideoFrontEndConfig(num_frames=4, size=(32, 32)))
    assert x.shape == (4, 32, 32, 3) and x[0, :, :14].max() < 30 and x[0, :, 18:].min() > 170


@needs_ffmpeg
def test_variable_frame_rate_timestamps(tmp_path):
    p = tmp_path / "vfr.mp4"
    # frames 0-9 every 0.1 s, then every 0.3 s
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=64x48:rate=10:duration=2", "-vf",
                    "setpts='if(lt(N,10),N,10+(N-10)*3)/(10*TB)'", "-fps_mode", "vfr", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", str(p)], check=True)
    times = np.array([t for t, _ in iter_frames(p, size=(8, 8))])
    assert len(times) == 20
    d = np.diff(times)
    assert np.allclose(d[:9], 0.1, atol=0.02) and np.allclose(d[10:], 0.3, atol=0.02)


def test_list_videos(tmp_path):
    for rel in ["a/x.mp4", "a/y.AVI", "b/c/z.mkv", "a/readme.txt"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    names = [p.relative_to(tmp_path).as_posix() for p in list_videos(tmp_path)]
    assert names == ["a/x.mp4", "a/y.AVI", "b/c/z.mkv"]


@needs_ffmpeg
def test_variable_frame_rate_clip_is_sampled_evenly_in_time(tmp_path):
    p = tmp_path / "vfr.mp4"
    # frame k shows the square at x = 4 + 2k; frames 0-9 last 0.1 s each, frames 10-29 only 1/30 s
    f = np.zeros((30, 48, 96, 3), np.uint8)
    for k in range(30):
        f[k, 16:32, 4 + 2 * k:20 + 2 * k] = 255
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
                    "-s", "96x48", "-r", "30", "-i", "-", "-vf", "setpts='if(lt(N,10),N*3,30+(N-10))/(30*TB)'",
                    "-fps_mode", "vfr", "-c:v", "libx264", "-crf", "10", "-pix_fmt", "yuv420p", str(p)],
                   input=f.tobytes(), check=True)
    times = np.array([t for t, _ in iter_frames(p, size=(8, 8))])
    x = sample_clip(p, VideoFrontEndConfig(num_frames=4, size=(48, 96)))
    got = [round((square_x(fr) - 11.5) / 2) for fr in x]
    # 4 equal spans of the 1.67 s clip: centres at 0.21, 0.63, 1.04, 1.46 s -> frames 2, 6, 11, 23
    want = [int(np.searchsorted(times, c, side="right") - 1) for c in (0.5 + np.arange(4)) * 5 / 3 / 4]
    assert got == want == [2, 6, 11, 23]


@needs_ffmpeg
def test_rotation_metadata_is_applied(tmp_path):
    src, rot = tmp_path / "r0.mp4", tmp_path / "r90.mp4"
    write_video(src, ramp_frames(6, 48, 64), 10, "h264")
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(src), "-c", "copy",
                    "-metadata:s:v:0", "rotate=90", str(rot)], check=True)
    a, _ = read_video(src)
    b, _ = read_video(rot)
    assert a.shape == (6, 48, 64, 3) and b.shape == (6, 64, 48, 3)  # shown upright, as players do
    # rotate=90 (the display matrix of phone videos) turns the picture a quarter turn counter-clockwise
    assert np.abs(np.rot90(a, 1, axes=(1, 2)).astype(int) - b).mean() < 8
    assert sample_clip(rot, VideoFrontEndConfig(num_frames=3, size=(16, 16))).shape == (3, 16, 16, 3)


def test_streamed_sampling_is_exact_for_short_clips_and_bounded_for_long_ones():
    from encoders.video import sample_indices, sample_stream

    cfg = VideoFrontEndConfig(num_frames=8)
    for n in (1, 5, 40, 64):
        got = sample_stream(((i / 25, np.array([i])) for i in range(n)), cfg, budget=64).ravel().tolist()
        assert got == sample_indices(n, 8).tolist()
    held = []

    def frames(n):
        for i in range(n):
            held.append(i)
            yield i / 25, np.array([i])

    n = 10_000
    got = sample_stream(frames(n), cfg, budget=64).ravel()
    exact = sample_indices(n, 8)
    assert len(held) == n and np.all(got <= exact) and np.all(exact - got < 2 * n / 64)


def test_decoded_frames_are_independent_arrays_and_resizing_first_changes_no_pixel(tmp_path):
    """The decoder reuses one buffer for the whole file and frames are shrunk before the colour
    conversion: every yielded frame must still be its own array, with the pixels of convert-then-resize."""
    import cv2

    p = write_video(tmp_path / "c.avi", ramp_frames(), 10, "mjpg")
    full = list(iter_frames(p))
    small = list(iter_frames(p, size=(24, 32)))
    assert len(full) == len(small) == 12
    for (_, a), (_, b) in zip(full, full[1:]):
        assert not np.shares_memory(a, b)
    assert [round(square_x(f)) for _, f in full] == sorted(round(square_x(f)) for _, f in full)  # not all the last
    cap = cv2.VideoCapture(str(p))
    for _, got in small:
        ok, bgr = cap.read()
        want = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (32, 24), interpolation=cv2.INTER_AREA)
        assert ok and np.array_equal(got, want)
    cap.release()


def test_stream_sampler_never_holds_more_than_its_budget():
    from encoders.video import StreamSampler

    s = StreamSampler(budget=16)
    most = 0
    for i in range(5000):
        s.add(i / 25, np.full((2, 2, 3), i % 256, np.uint8))
        most = max(most, len(s.kept))
    assert len(s) == 5000 and most <= 17  # budget + the one frame that triggers the thinning
    assert s.sample(VideoFrontEndConfig(num_frames=8, size=(2, 2))).shape == (8, 2, 2, 3)
