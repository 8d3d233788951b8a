"""Reading and writing videos: PyAV for video files, Pillow for frame folders and GIFs.

Every frame handed out is an RGB `numpy.ndarray` of shape `(H, W, 3)` and dtype `uint8` (grayscale, palette and
RGBA inputs are converted to RGB). Decoding streams: `iter_video_frames` holds one decoded frame at a time, so a
long video never has to fit in memory. Neither torchvision nor torchcodec is used.

A "video" is either a video file (anything FFmpeg demuxes: .mp4, .avi, .mkv, .webm, ...) or a folder of images,
read in natural name order (`frame2.jpg` before `frame10.jpg`).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image, UnidentifiedImageError
from transformers.utils import logging


logger = logging.get_logger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
GIF_EXTENSIONS = (".gif",)
# Codecs tried in order when writing a video file: H.264 plays everywhere; MPEG-4 part 2 ships with every FFmpeg.
PREFERRED_VIDEO_CODECS = ("libx264", "mpeg4")
# libx264 constant rate factor: 18 is visually lossless, which keeps overlays crisp.
DEFAULT_X264_CRF = 18
# Largest denominator used to turn a float fps into the rational time base FFmpeg wants (29.97 -> 30000/1001).
_MAX_FPS_DENOMINATOR = 100_000


@dataclass(frozen=True)
class VideoInfo:
    """Facts about a video source, known before decoding its pixels.

    Attributes:
        path: the video file or frame folder.
        num_frames: frames in the source, before any stride or `max_frames` (for containers that do not store a
            count it is the number of demuxed packets, which equals the frame count for every common codec).
        fps: frames per second of the source; `None` for a frame folder, which has no timing.
        height: frame height in pixels.
        width: frame width in pixels.
        is_frame_folder: whether the source is a folder of images.
    """

    path: str
    num_frames: int
    fps: float | None
    height: int
    width: int
    is_frame_folder: bool = False

    def num_output_frames(self, frame_stride: int = 1, max_frames: int | None = None) -> int:
        """Number of frames `iter_video_frames` yields with this stride and cap."""
        _validate_sampling(frame_stride, max_frames)
        count = -(-self.num_frames // frame_stride)
        return count if max_frames is None else min(count, max_frames)

    def output_fps(self, frame_stride: int = 1) -> float | None:
        """Frame rate of the subsampled stream (source fps divided by the stride)."""
        _validate_sampling(frame_stride, None)
        return None if self.fps is None else self.fps / frame_stride


# ----------------------------------------------------------------------------------------------------------------
# One video or a batch of videos (the one rule, used by TeViTImageProcessor and the pipeline)
# ----------------------------------------------------------------------------------------------------------------


def _is_array(value: Any) -> bool:
    # numpy arrays and torch tensors, told by their shape so that this module needs no torch.
    return isinstance(getattr(value, "shape", None), tuple | list) or type(value).__name__ == "Tensor"


def _is_path(value: Any) -> bool:
    return isinstance(value, str | os.PathLike)


def is_image_path(value: Any) -> bool:
    """A path whose suffix is an image extension (`IMAGE_EXTENSIONS`): one frame, not a video."""
    return _is_path(value) and Path(value).suffix.lower() in IMAGE_EXTENSIONS


def is_frame(value: Any) -> bool:
    """One frame: a PIL image, a 2-D/3-D array or tensor, or an image file path."""
    return isinstance(value, Image.Image) or (_is_array(value) and value.ndim in (2, 3)) or is_image_path(value)


def is_video(value: Any) -> bool:
    """One video: a video file / frame folder path, a 4-D array or tensor, or a list/tuple of frames (an empty one
    counts, so that the error names its video)."""
    if _is_path(value):
        return not is_image_path(value)
    if _is_array(value):
        return value.ndim == 4
    return isinstance(value, list | tuple) and all(is_frame(frame) for frame in value)


def _describe(value: Any) -> str:
    if _is_array(value):
        return f"{type(value).__name__} of shape {tuple(value.shape)}"
    if isinstance(value, list | tuple):
        return f"{type(value).__name__} of {len(value)} items"
    return type(value).__name__


def split_video_batch(inputs: Any) -> tuple[list[Any], bool]:
    """Tell one video from a batch of videos: the one rule of `TeViTImageProcessor` and the pipeline.

    - a 5-D array/tensor `(B, T, ...)` is a batch; a 4-D array/tensor `(T, H, W, C)` / `(T, C, H, W)` is one video;
    - a single frame (PIL image, 2-D/3-D array or tensor, image file path) is a one-frame video;
    - a path that is not an image file (a video file or a frame folder) is one video;
    - a list/tuple of frames is ONE video: a list of image paths is the frames of one video, a list of `(H, W, C)`
      arrays is one video;
    - a list/tuple of videos is a BATCH: a list of video file paths, of 4-D arrays, or of lists of frames.
    So a batch of one-frame videos is written `[[frame_a], [frame_b]]`, and a grayscale video given as one array
    carries its channel axis, `(T, H, W, 1)` (`(T, H, W)` reads as one 3-channel frame). Lists that mix frames and
    videos are rejected.

    Returns:
        `(videos, is_batch)`: the videos and whether the input was a batch.

    Raises:
        ValueError: empty input, or a list that is neither all frames nor all videos (the message names the item).
        TypeError: anything else.
    """
    if _is_array(inputs) and inputs.ndim == 5:
        return list(inputs), True
    if is_frame(inputs):
        return [[inputs]], False
    if isinstance(inputs, list | tuple) and len(inputs) == 0:
        raise ValueError(
            "Empty input: expected a video (path, frames, 4-D array) or a list of videos; got an empty list."
        )
    if is_video(inputs):
        return [list(inputs) if isinstance(inputs, tuple) else inputs], False
    if isinstance(inputs, list | tuple):
        for index, video in enumerate(inputs):
            if not is_video(video):
                raise ValueError(
                    f"Cannot read the input as one video or a batch of videos: item {index} is a "
                    f"{_describe(video)}. A video is a path to a video file or frame folder, a list of frames (PIL "
                    "images, (H, W, C) arrays, image paths) or a (T, H, W, C) array; a batch is a list of videos. "
                    "Lists that mix frames and videos are not accepted."
                )
        return list(inputs), True
    raise TypeError(
        f"Unsupported input {_describe(inputs)}: expected a video path, a list of frames, a (T, H, W, C) array or a "
        "list of those."
    )


def natural_sort_key(name: str) -> list[int | str]:
    """Sort key that orders embedded numbers by value: `img2.png` < `img10.png`."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_frame_files(folder: str | os.PathLike) -> list[Path]:
    """Image files of a frame folder in natural name order; `ValueError` when it holds none."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    if not files:
        raise ValueError(f"Frame folder {str(folder)!r} holds no image files (expected one of {IMAGE_EXTENSIONS}).")
    return sorted(files, key=lambda p: natural_sort_key(p.name))


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read the frame count, fps and frame size of a video file or frame folder without decoding every frame.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: the file is empty, not a decodable video, has no video stream or has zero frames; or the
            folder holds no readable image.
    """
    return _probe(path, check_frame_sizes=True)


def _probe(path: str | os.PathLike, check_frame_sizes: bool) -> VideoInfo:
    path = _existing_path(path)
    if path.is_dir():
        files = list_frame_files(path)
        first_frame = _load_image_rgb(files[0])
        height, width = first_frame.shape[:2]
        if check_frame_sizes:  # image headers only: a mixed-size folder fails before any work
            for index, file in enumerate(files):
                with Image.open(file) as image:
                    _check_frame_size(path, files, index, (image.height, image.width), (height, width))
        return VideoInfo(str(path), len(files), None, height, width, is_frame_folder=True)

    with _open_container(path) as container:
        stream = _first_video_stream(container, path)
        num_frames = stream.frames
        if num_frames <= 0:
            # Some containers (e.g. raw streams, some mkv) do not store a count: count packets, no decoding.
            num_frames = sum(1 for packet in _demux_or_raise(container, stream, path) if packet.size > 0)
        if num_frames <= 0:
            raise ValueError(f"Video file {str(path)!r} has zero frames.")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else None
        return VideoInfo(str(path), int(num_frames), fps, stream.height, stream.width)


def iter_video_frames(
    path: str | os.PathLike, frame_stride: int = 1, max_frames: int | None = None
) -> Iterator[np.ndarray]:
    """Stream the frames of a video file or frame folder.

    The path is checked when this is called (missing, empty or undecodable files raise right away); decoding
    then happens lazily, one frame at a time.

    Args:
        path: a video file or a folder of images.
        frame_stride: keep every `frame_stride`-th frame, starting with the first.
        max_frames: stop after yielding this many frames (`None`: no cap).

    Yields:
        `(H, W, 3)` uint8 RGB frames.

    Raises:
        FileNotFoundError / ValueError: as `probe_video`; `ValueError` naming the file if decoding fails midway.
    """
    _validate_sampling(frame_stride, max_frames)
    # Frame sizes are checked as the frames are decoded (`_load_frame_folder`): no second pass over the headers.
    info = _probe(path, check_frame_sizes=False)
    source = Path(info.path)
    if info.is_frame_folder:
        return _take(_load_frame_folder(source, frame_stride, (info.height, info.width)), max_frames)
    return _take(_decode_video_file(source, frame_stride), max_frames)


def read_video_frames(
    path: str | os.PathLike, frame_stride: int = 1, max_frames: int | None = None
) -> tuple[list[np.ndarray], VideoInfo]:
    """Decode a whole video (or its first `max_frames` kept frames) into memory.

    Returns:
        `(frames, info)`: a list of `(H, W, 3)` uint8 RGB frames and the `VideoInfo` of the source (its
        `num_frames` and `fps` describe the source, before the stride; see `VideoInfo.output_fps`).
    """
    info = probe_video(path)
    frames = list(iter_video_frames(path, frame_stride=frame_stride, max_frames=max_frames))
    if not frames:
        raise ValueError(f"Video {info.path!r} yielded zero frames.")
    return frames, info


def write_video(frames: Iterable[np.ndarray | Image.Image], path: str | os.PathLike, fps: float) -> Path:
    """Write RGB frames to a video file, atomically (a temp file in the same folder, then `os.replace`).

    The format follows the suffix: `.gif` is written with Pillow (it needs every frame in memory), anything
    else (`.mp4`, `.mkv`, `.avi`, ...) streams through PyAV with libx264 when FFmpeg has it, else MPEG-4.
    Frames must share one size; for yuv420p encoders an odd width or height is padded by one replicated
    pixel column/row at the right/bottom.

    Args:
        frames: `(H, W, 3)` uint8 RGB arrays or PIL images.
        path: output file.
        fps: frames per second (> 0).

    Returns:
        The path written.
    """
    path = Path(path)
    if not fps or fps <= 0:
        raise ValueError(f"fps must be > 0 to write {str(path)!r}, got {fps!r}.")
    if path.suffix.lower() in GIF_EXTENSIONS:
        return write_gif(frames, path, fps)
    return _atomic_write(path, lambda temp_path: _encode_with_pyav(frames, temp_path, fps))


def write_gif(frames: Iterable[np.ndarray | Image.Image], path: str | os.PathLike, fps: float, loop: int = 0) -> Path:
    """Write RGB frames as an animated GIF with Pillow, atomically. `loop=0` repeats forever."""
    path = Path(path)
    if not fps or fps <= 0:
        raise ValueError(f"fps must be > 0 to write {str(path)!r}, got {fps!r}.")
    images = [Image.fromarray(_as_rgb_array(frame, index)) for index, frame in enumerate(frames)]
    if not images:
        raise ValueError(f"No frames to write to {str(path)!r}.")
    _check_same_size(images[0].size, images, path)
    # GIF frame durations are whole milliseconds.
    duration_ms = max(1, round(1000.0 / fps))

    def save(temp_path: Path) -> None:
        images[0].save(
            temp_path, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=loop
        )

    return _atomic_write(path, save)


# ----------------------------------------------------------------------------------------------------------------
# internals


def _validate_sampling(frame_stride: int, max_frames: int | None) -> None:
    if not isinstance(frame_stride, int) or frame_stride < 1:
        raise ValueError(f"frame_stride must be an integer >= 1, got {frame_stride!r}.")
    if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 1):
        raise ValueError(f"max_frames must be None or an integer >= 1, got {max_frames!r}.")


def _existing_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Video {str(path)!r} does not exist.")
    if path.is_file() and path.stat().st_size == 0:
        raise ValueError(f"Video file {str(path)!r} is empty (0 bytes).")
    return path


def _open_container(path: Path):
    try:
        return av.open(str(path), mode="r")
    except av.error.FFmpegError as error:
        raise ValueError(f"Cannot open {str(path)!r} as a video (corrupt or unsupported file): {error}") from error


def _first_video_stream(container, path: Path):
    if not container.streams.video:
        raise ValueError(f"File {str(path)!r} has no video stream.")
    return container.streams.video[0]


def _demux_or_raise(container, stream, path: Path) -> Iterator:
    try:
        yield from container.demux(stream)
    except av.error.FFmpegError as error:
        raise ValueError(f"Corrupt video data in {str(path)!r}: {error}") from error


def _decode_video_file(path: Path, frame_stride: int) -> Iterator[np.ndarray]:
    with _open_container(path) as container:
        stream = _first_video_stream(container, path)
        # Multi-threaded decoding of the codec; frames still arrive in presentation order.
        stream.thread_type = "AUTO"
        decoded_index = -1
        try:
            for decoded_index, frame in enumerate(container.decode(stream)):
                if decoded_index % frame_stride == 0:
                    yield frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as error:
            raise ValueError(
                f"Corrupt video data in {str(path)!r} after {decoded_index + 1} decoded frames: {error}"
            ) from error
        if decoded_index < 0:
            raise ValueError(f"Video file {str(path)!r} has zero decodable frames.")
        promised = stream.frames
        if promised > 0 and decoded_index + 1 < promised:
            # Never silent: a file cut short (e.g. an MP4 with its index at the front) decodes fewer frames than its
            # container promises. Callers compare the count they got with `probe_video`'s (predict records it).
            logger.warning(
                "%s: the container promises %d frames but only %d could be decoded (is the file truncated?).",
                path,
                promised,
                decoded_index + 1,
            )


def _load_frame_folder(folder: Path, frame_stride: int, size: tuple[int, int]) -> Iterator[np.ndarray]:
    """The frames of a folder in order; every frame must have the first frame's size (named by file and index)."""
    files = list_frame_files(folder)
    for index in range(0, len(files), frame_stride):
        frame = _load_image_rgb(files[index])
        _check_frame_size(folder, files, index, frame.shape[:2], size)
        yield frame


def _check_frame_size(
    folder: Path, files: list[Path], index: int, size: tuple[int, int], expected: tuple[int, int]
) -> None:
    if tuple(size) != tuple(expected):
        raise ValueError(
            f"Frame {index} of {str(folder)!r} ({files[index].name}) is {size[1]}x{size[0]}, but the video's first "
            f"frame ({files[0].name}) is {expected[1]}x{expected[0]}: all frames must have one size."
        )


def _take(frames: Iterator[np.ndarray], max_frames: int | None) -> Iterator[np.ndarray]:
    try:
        for count, frame in enumerate(frames):
            if max_frames is not None and count >= max_frames:
                break
            yield frame
    finally:
        # Closing the source generator releases the decoder when we stop early (or the consumer does).
        close = getattr(frames, "close", None)
        if close is not None:
            close()


def _load_image_rgb(file: Path) -> np.ndarray:
    try:
        with Image.open(file) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"Cannot read frame image {str(file)!r}: {error}") from error


def _as_rgb_array(frame: np.ndarray | Image.Image, index: int) -> np.ndarray:
    if isinstance(frame, Image.Image):
        return np.asarray(frame.convert("RGB"))
    array = np.asarray(frame)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"Frame {index} must have shape (H, W, 3), got {array.shape}.")
    if array.dtype != np.uint8:
        raise ValueError(f"Frame {index} must have dtype uint8, got {array.dtype}.")
    return np.ascontiguousarray(array)


def _check_same_size(expected_size: tuple[int, int], images: list[Image.Image], path: Path) -> None:
    for index, image in enumerate(images):
        if image.size != expected_size:
            raise ValueError(
                f"All frames written to {str(path)!r} must share one size: frame {index} is {image.size} (W, H), "
                f"frame 0 is {expected_size}."
            )


def _pick_video_codec() -> str:
    for codec in PREFERRED_VIDEO_CODECS:
        if codec in av.codecs_available:
            return codec
    raise RuntimeError(f"FFmpeg in PyAV has none of the video encoders {PREFERRED_VIDEO_CODECS}.")


def _pad_to_even(frame: np.ndarray) -> np.ndarray:
    pad_bottom, pad_right = frame.shape[0] % 2, frame.shape[1] % 2
    if pad_bottom or pad_right:
        frame = np.pad(frame, ((0, pad_bottom), (0, pad_right), (0, 0)), mode="edge")
    return frame


def _encode_with_pyav(frames: Iterable[np.ndarray | Image.Image], path: Path, fps: float) -> None:
    codec = _pick_video_codec()
    frame_iterator = iter(frames)
    first = next(frame_iterator, None)
    if first is None:
        raise ValueError(f"No frames to write to {str(path)!r}.")
    first = _as_rgb_array(first, 0)
    height, width = first.shape[:2]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(_MAX_FPS_DENOMINATOR))
        stream.height, stream.width = height + height % 2, width + width % 2
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": str(DEFAULT_X264_CRF)}
        else:
            # MPEG-4 part 2 defaults to a low bitrate; fixed quantiser 2 (of 1..31) keeps the picture sharp.
            stream.codec_context.qscale = 2
            stream.codec_context.flags |= av.codec.context.Flags.qscale
        for index, frame in enumerate(_chain_first(first, frame_iterator)):
            array = _as_rgb_array(frame, index)
            if array.shape[:2] != (height, width):
                raise ValueError(
                    f"All frames written to {str(path)!r} must share one size: frame {index} is "
                    f"{array.shape[:2]} (H, W), frame 0 is {(height, width)}."
                )
            video_frame = av.VideoFrame.from_ndarray(_pad_to_even(array), format="rgb24")
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode(None))


def _chain_first(first: np.ndarray, rest: Iterator) -> Iterator:
    yield first
    yield from rest


def _current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _atomic_write(path: Path, write) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder (so os.replace is atomic) and same suffix (PyAV picks the container format from it).
    file_descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(file_descriptor)
    temp_path = Path(temp_name)
    try:
        write(temp_path)
        os.chmod(temp_path, 0o666 & ~_current_umask())  # mkstemp makes 0600; files follow the umask, as other tools'
        os.replace(temp_path, path)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    logger.info("Wrote %s", path)
    return path
