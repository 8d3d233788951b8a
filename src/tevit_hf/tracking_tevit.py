"""Near-online TeViT inference for videos of any length (the paper's protocol, spec section 11).

The released TeViT code is offline: it runs the whole video as one clip (spec 4.1), so memory grows with the video.
Here the video is cut into overlapping clips of `clip_length` frames, started every `stride` frames, that are run in
time order; the instances of consecutive clips are linked into tracks. This linking rule is tevit-hf's own design
(the paper names its ingredients, the code has none):

* **Clips.** Frames are read from an iterator into a buffer of at most `clip_length` frames. A clip runs when the
  buffer is full, then the next one starts `stride` frames later. When the video ends with frames not covered yet, a
  last clip runs on the *last* `clip_length` frames (so every clip has the same length; its overlap with the clip
  before it is then larger than `clip_length - stride`). A video of at most `clip_length` frames is one clip, and
  the result equals the offline result (same instances in the same order, same scores, labels, boxes and masks;
  ids are track numbers `0..K-1` in score order instead of top-k slots).
* **Similarity** of instance i of the previous clip and instance j of the current clip, over their overlapping
  frames: `box_iou_weight * box_term + mask_iou_weight * mask_term` (defaults 0.5 and 0.5, so it lies in [0, 1]).
  An instance is *present* in a frame when it is valid there and its mask is not empty.
  - `mask_term` is the spatio-temporal mask IoU `sum_t |A_t & B_t| / sum_t |A_t | B_t|` (the YouTube-VIS IoU,
    `masks_tevit.video_mask_iou`, the function the metric uses), computed on the RLEs (no mask is decoded);
  - `box_term` is the mean box IoU over the overlap frames where at least one of the two is present (a frame where
    only one is present scores 0).
* **Matching.** Hungarian assignment (`scipy.optimize.linear_sum_assignment`) maximising the similarity plus
  `label_agreement_bonus` for pairs with the same label (it only breaks ties such as the same query selected with
  two classes); a pair is linked when its similarity (without the bonus) is at least `min_link_similarity`
  (default 0.5). Unmatched current instances start new tracks; unmatched previous instances end their track.
  Only the previous clip is searched: a track that is absent throughout an overlap ends, and the object gets a new
  track if it comes back later (appearance re-identification is out of scope).
* **Overlap frames.** For a linked pair, each overlap frame takes the prediction of the clip whose centre is nearer
  (the earlier clip on ties): the earlier clip keeps the first half of the overlap, the later clip the second half.
  An ending track keeps its previous-clip predictions for the whole overlap; a new track takes its current-clip
  predictions from the start of its clip.
* **Scores and labels.** Every output frame votes with the clip that produced it: the track score is the mean of its
  clip scores weighted by the number of frames each clip contributes; the label is the one with the highest sum of
  (contributed frames x clip score) (the earliest such label on ties).
* **Output** (like `TeViTImageProcessor.post_process_video_instance_segmentation(return_rle=True)`), sorted by
  descending score: `{"id", "label", "score", "boxes" (N, 4) float32 xyxy original pixels (NaN rows where the track
  has no prediction), "frame_valid" (N,) bool (True where the track has a prediction, which may be an empty mask),
  "visible" (N,) bool (True where its mask is not empty: the frames where the object is seen), "segmentations" (N
  per-frame RLE dicts; frames without a prediction share one read-only empty RLE)}`.

Memory: at most `clip_length` decoded frames, one clip's model activations and the previous clip's RLEs are held;
finished frames are kept only as RLEs and boxes.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from transformers.utils import logging

from .inference_tevit import TeViTClipRunner
from .masks_tevit import empty_mask_rle, pairwise_box_iou, rle_areas, video_mask_iou
from .video_io import iter_video_frames, probe_video


logger = logging.get_logger(__name__)

DEFAULT_CLIP_LENGTH = 36
DEFAULT_STRIDE = 18
DEFAULT_BOX_IOU_WEIGHT = 0.5
DEFAULT_MASK_IOU_WEIGHT = 0.5
DEFAULT_MIN_LINK_SIMILARITY = 0.5
DEFAULT_LABEL_AGREEMENT_BONUS = 0.05


def validate_clip_schedule(clip_length: int, stride: int) -> None:
    """`ValueError` unless `0 < stride <= clip_length` (integers)."""
    if not isinstance(clip_length, int) or clip_length < 1:
        raise ValueError(f"clip_length must be an integer >= 1, got {clip_length!r}.")
    if not isinstance(stride, int) or not 0 < stride <= clip_length:
        raise ValueError(f"stride must be an integer with 0 < stride <= clip_length ({clip_length}), got {stride!r}.")


def iter_clips(frames: Iterable[Any], clip_length: int, stride: int) -> Iterator[tuple[int, list[Any]]]:
    """Cut a frame stream into overlapping clips while holding at most `clip_length` frames.

    Clips start every `stride` frames; a last clip covers the final `clip_length` frames when the stride schedule
    leaves frames uncovered (see the module docstring). A stream of at most `clip_length` frames is one clip.

    Yields:
        `(start_frame, clip_frames)`: the index of the clip's first frame and its frames (a new list).

    Raises:
        ValueError: the stream is empty, or the schedule is invalid.
    """
    validate_clip_schedule(clip_length, stride)
    buffer: deque[Any] = deque(maxlen=clip_length)
    num_read = 0
    covered_until = 0  # frames [0, covered_until) are in some clip already
    next_clip_end = clip_length
    for frame in frames:
        buffer.append(frame)
        num_read += 1
        if num_read == next_clip_end:
            yield num_read - len(buffer), list(buffer)
            covered_until = num_read
            next_clip_end += stride
    if num_read == 0:
        raise ValueError("The video has no frames.")
    if num_read > covered_until:
        yield num_read - len(buffer), list(buffer)


def num_clips(num_frames: int, clip_length: int, stride: int) -> int:
    """Number of clips `iter_clips` yields for a video of `num_frames` frames."""
    validate_clip_schedule(clip_length, stride)
    if num_frames <= clip_length:
        return 1
    return 1 + math.ceil((num_frames - clip_length) / stride)


@dataclass
class ClipPrediction:
    """Post-processed instances of one clip, in the RLE format of
    `TeViTImageProcessor.post_process_video_instance_segmentation(..., return_rle=True)`.

    Attributes:
        start_frame: video index of the clip's first frame.
        instances: dicts with `label` (int), `score` (float), `boxes` `(T_clip, 4)` xyxy pixels, `segmentations`
            (T_clip RLE dicts of one frame size) and optionally `frame_valid` `(T_clip,)` bool.
        num_frames: the clip length T_clip; inferred from the instances when None (required when there are none,
            e.g. after a score threshold removed them all).
    """

    start_frame: int
    instances: list[Mapping[str, Any]]
    num_frames: int | None = None
    frame_size: tuple[int, int] | None = field(init=False)

    def __post_init__(self) -> None:
        lengths = {len(instance["segmentations"]) for instance in self.instances}
        lengths |= {len(instance["boxes"]) for instance in self.instances}
        if len(lengths) > 1:
            raise ValueError(
                f"Instances of the clip starting at frame {self.start_frame} disagree on its length: {sorted(lengths)}."
            )
        if self.num_frames is not None:
            lengths.add(int(self.num_frames))
        if len(lengths) != 1:
            raise ValueError(
                f"The clip starting at frame {self.start_frame} has instances of lengths {sorted(lengths)} and "
                f"num_frames={self.num_frames}: expected one positive length."
            )
        self.num_frames = lengths.pop()
        if self.num_frames < 1:
            raise ValueError(f"The clip starting at frame {self.start_frame} has no frames.")
        sizes = {
            tuple(int(s) for s in rle["size"]) for instance in self.instances for rle in instance["segmentations"]
        }
        if len(sizes) > 1:
            raise ValueError(f"Clip starting at frame {self.start_frame} mixes mask sizes {sorted(sizes)}.")
        self.frame_size = sizes.pop() if sizes else None

    @property
    def end_frame(self) -> int:
        """Video index one past the clip's last frame."""
        return self.start_frame + self.num_frames


class _InstanceArrays:
    """NumPy views of one clip instance: boxes `(T, 4)`, RLEs, validity `(T,)`, mask areas `(T,)`, presence `(T,)`."""

    def __init__(self, instance: Mapping[str, Any]) -> None:
        self.label = int(instance["label"])
        self.score = float(instance["score"])
        self.boxes = _to_numpy(instance["boxes"]).astype(np.float32, copy=True).reshape(-1, 4)
        self.rles = list(instance["segmentations"])
        valid = instance.get("frame_valid")
        self.valid = np.ones(len(self.rles), dtype=bool) if valid is None else _to_numpy(valid).astype(bool)
        self.areas = rle_areas(self.rles)
        self.present = self.valid & (self.areas > 0)


def clip_link_similarity(
    previous: ClipPrediction,
    current: ClipPrediction,
    box_iou_weight: float = DEFAULT_BOX_IOU_WEIGHT,
    mask_iou_weight: float = DEFAULT_MASK_IOU_WEIGHT,
) -> np.ndarray:
    """Similarity `(P, C)` of every (previous-clip, current-clip) instance pair over the clips' overlapping frames.

    `box_iou_weight * mean box IoU + mask_iou_weight * spatio-temporal mask IoU`; see the module docstring. Zero
    everywhere when the clips do not overlap.
    """
    return _similarity(
        [_InstanceArrays(i) for i in previous.instances],
        [_InstanceArrays(i) for i in current.instances],
        previous,
        current,
        box_iou_weight,
        mask_iou_weight,
    )


def match_clip_instances(
    similarity: np.ndarray,
    previous_labels: Sequence[int],
    current_labels: Sequence[int],
    min_link_similarity: float = DEFAULT_MIN_LINK_SIMILARITY,
    label_agreement_bonus: float = DEFAULT_LABEL_AGREEMENT_BONUS,
) -> list[tuple[int, int]]:
    """Hungarian matching of previous to current instances; returns the linked `(previous, current)` index pairs.

    Maximises `similarity + label_agreement_bonus * (labels equal)`; keeps pairs with `similarity >=
    min_link_similarity`. Sorted by previous index.
    """
    if similarity.size == 0:
        return []
    same_label = np.asarray(previous_labels)[:, None] == np.asarray(current_labels)[None, :]
    gain = similarity + label_agreement_bonus * same_label
    rows, cols = linear_sum_assignment(gain, maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if similarity[r, c] >= min_link_similarity]


@dataclass
class _Track:
    track_id: int
    # Contiguous or not, (first_frame, boxes (n, 4), rles, valid (n,), visible (n,)) pieces in time order.
    segments: list[tuple[int, np.ndarray, list, np.ndarray, np.ndarray]] = field(default_factory=list)
    # (score, label, contributed frames) of each clip instance linked into the track.
    votes: list[tuple[float, int, int]] = field(default_factory=list)

    def score_and_label(self) -> tuple[float, int]:
        weights = [frames for _, _, frames in self.votes]
        if len(self.votes) == 1 or sum(weights) == 0:
            # Exact (no float round trip) for single-clip tracks, so one clip reproduces the offline score.
            return float(np.mean([score for score, _, _ in self.votes])), self.votes[0][1]
        score = math.fsum(s * w for s, _, w in self.votes) / math.fsum(weights)
        label_mass: dict[int, float] = {}
        for s, label, w in self.votes:
            label_mass[label] = label_mass.get(label, 0.0) + s * w
        best = max(label_mass.values())
        label = next(label for label, mass in label_mass.items() if mass == best)
        return score, label


class ClipLinker:
    """Link the instances of overlapping clips, fed one `ClipPrediction` at a time in time order, into tracks.

    Holds only the previous clip and the finished frames of each track (RLEs and boxes). See the module docstring
    for the rules.

    Args:
        box_iou_weight: weight of the mean box IoU in the similarity (>= 0).
        mask_iou_weight: weight of the spatio-temporal mask IoU in the similarity (>= 0).
        min_link_similarity: pairs below this similarity are never linked.
        label_agreement_bonus: added to the matching gain of same-label pairs (tie-breaking only).
    """

    def __init__(
        self,
        box_iou_weight: float = DEFAULT_BOX_IOU_WEIGHT,
        mask_iou_weight: float = DEFAULT_MASK_IOU_WEIGHT,
        min_link_similarity: float = DEFAULT_MIN_LINK_SIMILARITY,
        label_agreement_bonus: float = DEFAULT_LABEL_AGREEMENT_BONUS,
    ) -> None:
        if box_iou_weight < 0 or mask_iou_weight < 0 or box_iou_weight + mask_iou_weight <= 0:
            raise ValueError(
                f"box_iou_weight and mask_iou_weight must be >= 0 with a positive sum, got {box_iou_weight} and "
                f"{mask_iou_weight}."
            )
        if label_agreement_bonus < 0:
            raise ValueError(f"label_agreement_bonus must be >= 0, got {label_agreement_bonus}.")
        self.box_iou_weight = box_iou_weight
        self.mask_iou_weight = mask_iou_weight
        self.min_link_similarity = min_link_similarity
        self.label_agreement_bonus = label_agreement_bonus
        self._tracks: list[_Track] = []
        self._previous: ClipPrediction | None = None
        self._previous_arrays: list[_InstanceArrays] = []
        self._previous_track_ids: list[int] = []
        self._previous_owned_from: list[int] = []  # first video frame each previous instance still owns
        self._frame_size: tuple[int, int] | None = None

    def add_clip(self, clip: ClipPrediction) -> list[int]:
        """Link a clip to the previous one; returns the track id of each of its instances (in order)."""
        self._check_clip(clip)
        arrays = [_InstanceArrays(instance) for instance in clip.instances]
        previous = self._previous
        owned_from = [clip.start_frame] * len(arrays)
        track_ids: list[int | None] = [None] * len(arrays)
        if previous is None:
            pairs: list[tuple[int, int]] = []
        else:
            similarity = _similarity(
                self._previous_arrays, arrays, previous, clip, self.box_iou_weight, self.mask_iou_weight
            )
            pairs = match_clip_instances(
                similarity,
                [a.label for a in self._previous_arrays],
                [a.label for a in arrays],
                self.min_link_similarity,
                self.label_agreement_bonus,
            )
            handover = _handover_frame(previous, clip)
            linked_previous = {}
            for previous_index, current_index in pairs:
                linked_previous[previous_index] = current_index
                track_ids[current_index] = self._previous_track_ids[previous_index]
                owned_from[current_index] = handover + 1
            for previous_index in range(len(self._previous_arrays)):
                last = handover if previous_index in linked_previous else previous.end_frame - 1
                self._commit(previous, previous_index, last)
            logger.debug(
                "Clip at frame %d: %d of %d instances linked to the previous clip.",
                clip.start_frame,
                len(pairs),
                len(arrays),
            )
        for index, track_id in enumerate(track_ids):
            if track_id is None:
                track_ids[index] = len(self._tracks)
                self._tracks.append(_Track(track_id=len(self._tracks)))
        self._previous = clip
        self._previous_arrays = arrays
        self._previous_track_ids = [int(t) for t in track_ids]
        self._previous_owned_from = owned_from
        return list(self._previous_track_ids)

    def finalize(self, num_frames: int | None = None) -> list[dict[str, Any]]:
        """Commit the last clip and return the tracks (see the module docstring for the format).

        Args:
            num_frames: video length; defaults to the end of the last clip.
        """
        if self._previous is None:
            raise ValueError("No clip was added: nothing to link.")
        for index in range(len(self._previous_arrays)):
            self._commit(self._previous, index, self._previous.end_frame - 1)
        total = self._previous.end_frame if num_frames is None else int(num_frames)
        if total < self._previous.end_frame:
            raise ValueError(f"num_frames={total} is shorter than the clips seen ({self._previous.end_frame} frames).")
        empty_rle = empty_mask_rle(*(self._frame_size or (0, 0)))
        results = []
        for track in self._tracks:
            boxes = np.full((total, 4), np.nan, dtype=np.float32)
            valid = np.zeros(total, dtype=bool)
            visible = np.zeros(total, dtype=bool)
            segmentations: list[dict[str, Any]] = [empty_rle] * total
            for first, segment_boxes, rles, segment_valid, segment_visible in track.segments:
                boxes[first : first + len(rles)] = segment_boxes
                valid[first : first + len(rles)] = segment_valid
                visible[first : first + len(rles)] = segment_visible
                segmentations[first : first + len(rles)] = rles
            score, label = track.score_and_label()
            results.append(
                {
                    "id": track.track_id,
                    "label": label,
                    "score": score,
                    "boxes": torch.from_numpy(boxes),
                    "frame_valid": torch.from_numpy(valid),
                    "visible": torch.from_numpy(visible),
                    "segmentations": segmentations,
                }
            )
        results.sort(key=lambda instance: -instance["score"])
        return results

    # -- internals -------------------------------------------------------------------------------------------------

    def _check_clip(self, clip: ClipPrediction) -> None:
        previous = self._previous
        if previous is not None and not previous.start_frame < clip.start_frame <= previous.end_frame:
            raise ValueError(
                f"Clips must come in time order without gaps: the clip starting at frame {clip.start_frame} follows "
                f"one covering frames [{previous.start_frame}, {previous.end_frame})."
            )
        if clip.frame_size is not None:
            if self._frame_size is not None and clip.frame_size != self._frame_size:
                raise ValueError(
                    f"Frame size changed to {clip.frame_size} in the clip starting at frame {clip.start_frame}; "
                    f"earlier clips had {self._frame_size}."
                )
            self._frame_size = clip.frame_size

    def _commit(self, clip: ClipPrediction, index: int, last_frame: int) -> None:
        """Hand frames `[owned_from, last_frame]` of previous-clip instance `index` to its track."""
        first_frame = self._previous_owned_from[index]
        arrays = self._previous_arrays[index]
        track = self._tracks[self._previous_track_ids[index]]
        begin, end = first_frame - clip.start_frame, last_frame + 1 - clip.start_frame
        num_frames = max(0, end - begin)
        if num_frames:
            track.segments.append(
                (
                    first_frame,
                    arrays.boxes[begin:end].copy(),
                    arrays.rles[begin:end],
                    arrays.valid[begin:end].copy(),
                    arrays.present[begin:end].copy(),
                )
            )
        track.votes.append((arrays.score, arrays.label, num_frames))


def _handover_frame(previous: ClipPrediction, current: ClipPrediction) -> int:
    """Last video frame the previous clip keeps for a linked track: the frames nearer its centre (ties: earlier)."""
    previous_center = previous.start_frame + (previous.num_frames - 1) / 2
    current_center = current.start_frame + (current.num_frames - 1) / 2
    handover = math.floor((previous_center + current_center) / 2)
    return min(max(handover, current.start_frame - 1), previous.end_frame - 1)


def _similarity(
    previous_arrays: list[_InstanceArrays],
    current_arrays: list[_InstanceArrays],
    previous: ClipPrediction,
    current: ClipPrediction,
    box_iou_weight: float,
    mask_iou_weight: float,
) -> np.ndarray:
    num_previous, num_current = len(previous_arrays), len(current_arrays)
    overlap = range(max(previous.start_frame, current.start_frame), min(previous.end_frame, current.end_frame))
    if not num_previous or not num_current or not len(overlap):
        return np.zeros((num_previous, num_current), dtype=np.float64)
    previous_frames = slice(overlap.start - previous.start_frame, overlap.stop - previous.start_frame)
    current_frames = slice(overlap.start - current.start_frame, overlap.stop - current.start_frame)
    mask_term = video_mask_iou(
        [a.rles[previous_frames] for a in previous_arrays],
        [a.rles[current_frames] for a in current_arrays],
        np.stack([a.areas[previous_frames] for a in previous_arrays]),
        np.stack([a.areas[current_frames] for a in current_arrays]),
    )
    box_iou_sum = np.zeros((num_previous, num_current))
    either_present_frames = np.zeros((num_previous, num_current))
    for frame in overlap:
        p, c = frame - previous.start_frame, frame - current.start_frame
        previous_present = np.array([a.present[p] for a in previous_arrays])
        current_present = np.array([a.present[c] for a in current_arrays])
        both = previous_present[:, None] & current_present[None, :]
        box_iou = pairwise_box_iou(
            torch.from_numpy(np.stack([a.boxes[p] for a in previous_arrays])),
            torch.from_numpy(np.stack([a.boxes[c] for a in current_arrays])),
        ).numpy()
        box_iou_sum += np.where(both, np.nan_to_num(box_iou), 0.0)
        either_present_frames += previous_present[:, None] | current_present[None, :]
    box_term = np.divide(
        box_iou_sum, either_present_frames, out=np.zeros_like(box_iou_sum), where=either_present_frames > 0
    )
    return box_iou_weight * box_term + mask_iou_weight * mask_term


class TeViTNearOnlineTracker:
    """Near-online TeViT inference: overlapping clips, each run by a `TeViTClipRunner` (inference_tevit: processor →
    model → post-processing to per-frame RLEs), linked into tracks by a `ClipLinker`. Memory is bounded by the clip length, not the video length.

    Args:
        model: a `TeViTForVideoInstanceSegmentation` (put in eval mode here).
        image_processor: a `TeViTImageProcessor` (pre-processing and post-processing of each clip).
        clip_length: frames per clip (T, paper default 36).
        stride: frames between clip starts (S, paper default 18); `0 < stride <= clip_length`.
        threshold: per-clip score threshold passed to the post-processing (the official model uses none: 0.0).
        mask_threshold: mask binarisation threshold of the post-processing.
        box_iou_weight, mask_iou_weight, min_link_similarity, label_agreement_bonus: linking rule (`ClipLinker`).
        show_progress: show a tqdm progress bar over clips.
        progress_callback: called after each clip with `(clips_done, total_clips)` (total None when the video
            length is unknown), e.g. to drive a web UI's progress bar.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        image_processor: Any,
        clip_length: int = DEFAULT_CLIP_LENGTH,
        stride: int = DEFAULT_STRIDE,
        threshold: float = 0.0,
        mask_threshold: float = 0.5,
        box_iou_weight: float = DEFAULT_BOX_IOU_WEIGHT,
        mask_iou_weight: float = DEFAULT_MASK_IOU_WEIGHT,
        min_link_similarity: float = DEFAULT_MIN_LINK_SIMILARITY,
        label_agreement_bonus: float = DEFAULT_LABEL_AGREEMENT_BONUS,
        show_progress: bool = False,
        progress_callback: Callable[[int, int | None], None] | None = None,
    ) -> None:
        validate_clip_schedule(clip_length, stride)
        self.model = model
        self.image_processor = image_processor
        self.clip_length = clip_length
        self.stride = stride
        self.threshold = threshold
        self.mask_threshold = mask_threshold
        self.runner = TeViTClipRunner(model, image_processor, threshold=threshold, mask_threshold=mask_threshold)
        self.linker_kwargs = {
            "box_iou_weight": box_iou_weight,
            "mask_iou_weight": mask_iou_weight,
            "min_link_similarity": min_link_similarity,
            "label_agreement_bonus": label_agreement_bonus,
        }
        ClipLinker(**self.linker_kwargs)  # validate the linking arguments now, not at the first video
        self.show_progress = show_progress
        self.progress_callback = progress_callback

    def predict_clip(self, clip_frames: Sequence[Any], start_frame: int = 0) -> ClipPrediction:
        """Run one clip through the clip runner (per-frame RLEs in the original frame size) for the linker."""
        return ClipPrediction(start_frame=start_frame, instances=self.runner(clip_frames), num_frames=len(clip_frames))

    def track(self, frames: Iterable[Any] | str | os.PathLike, num_frames: int | None = None) -> list[dict[str, Any]]:
        """Segment and track the instances of one video.

        Args:
            frames: the video's frames in order (any frame type the image processor accepts: `(H, W, 3)` uint8
                arrays, PIL images, ...), consumed lazily, or a path to a video file / frame folder (decoded with
                `video_io.iter_video_frames`).
            num_frames: the video length if known, only for the progress bar's total.

        Returns:
            The tracks, sorted by descending score (format in the module docstring).
        """
        if isinstance(frames, (str, os.PathLike)):
            num_frames = probe_video(frames).num_frames if num_frames is None else num_frames
            frames = iter_video_frames(frames)
        self.model.eval()
        linker = ClipLinker(**self.linker_kwargs)
        total = None if num_frames is None else num_clips(num_frames, self.clip_length, self.stride)
        end_frame = 0
        # A context manager, so the bar is closed (its line ended) when a frame fails to decode, too.
        with _progress_bar(total, disable=not self.show_progress) as progress:
            for start_frame, clip_frames in iter_clips(frames, self.clip_length, self.stride):
                clip = self.predict_clip(clip_frames, start_frame)
                del clip_frames  # the buffer inside iter_clips is the only frame store
                linker.add_clip(clip)
                end_frame = start_frame + clip.num_frames
                progress.update(1)
                if self.progress_callback is not None:
                    self.progress_callback(progress.n, total)
        return linker.finalize(end_frame)


def _progress_bar(total: int | None, disable: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="clip", desc="near-online inference", disable=disable)


def _to_numpy(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


__all__ = [
    "ClipLinker",
    "ClipPrediction",
    "TeViTNearOnlineTracker",
    "clip_link_similarity",
    "iter_clips",
    "match_clip_instances",
    "num_clips",
    "validate_clip_schedule",
]
