"""Tests of the YouTube-VIS AP metric: hand-computed cases, a brute-force cross-check, `evaluate` and the CLI.

The official scorer (youtubevos/cocoapi `ytvoseval`) is not installable here (not on PyPI, no network), so the
random-data cross-check compares against an independent, deliberately naive implementation written below from the
scorer's semantics: dense masks, per-pair loops, the literal greedy matcher and accumulation.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from tevit_hf.evaluation import (
    AREA_RANGES_COCO,
    YouTubeVISEvalParams,
    compute_precision_recall,
    compute_video_iou,
    evaluate_youtube_vis,
    format_metrics_table,
    load_youtube_vis_ground_truth,
    parse_youtube_vis_results,
)


# pycocotools' decode warns under numpy 2 on every call; only the naive reference decodes masks.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

MODULE_DIR = Path(__file__).resolve().parents[1] / "src" / "tevit_hf" / "evaluation" / "youtube_vis_ap"


# ------------------------------------------------------------------------------------------------------------------
# Helpers to write YouTube-VIS json from dense masks
# ------------------------------------------------------------------------------------------------------------------


def rle(mask: np.ndarray | None) -> dict | None:
    if mask is None:
        return None
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in encoded["size"]], "counts": encoded["counts"].decode("ascii")}


def box_mask(height: int, width: int, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def make_dataset(videos: list[tuple[int, int, int, int]], categories: list[tuple[int, str]], annotations: list[dict]):
    """videos: (id, height, width, length); annotations: {video_id, category_id, masks: list[mask|None], iscrowd?}."""
    dataset = {
        "videos": [
            {"id": vid, "height": h, "width": w, "length": t, "file_names": [f"{vid}/{i:05d}.jpg" for i in range(t)]}
            for vid, h, w, t in videos
        ],
        "categories": [{"id": cid, "name": name} for cid, name in categories],
        "annotations": [],
    }
    for index, annotation in enumerate(annotations):
        masks = annotation["masks"]
        dataset["annotations"].append(
            {
                "id": index + 1,
                "video_id": annotation["video_id"],
                "category_id": annotation["category_id"],
                "iscrowd": annotation.get("iscrowd", 0),
                "segmentations": [rle(mask) for mask in masks],
                "areas": [None if mask is None else int(mask.sum()) for mask in masks],
            }
        )
    return dataset


def result(video_id: int, category_id: int, score: float, masks: list) -> dict:
    return {"video_id": video_id, "category_id": category_id, "score": score, "segmentations": [rle(m) for m in masks]}


def ground_truth_as_results(dataset: dict, score: float = 1.0) -> list[dict]:
    return [
        {
            "video_id": a["video_id"],
            "category_id": a["category_id"],
            "score": score,
            "segmentations": a["segmentations"],
        }
        for a in dataset["annotations"]
        if not a.get("iscrowd", 0)
    ]


# ------------------------------------------------------------------------------------------------------------------
# Independent naive reference implementation
# ------------------------------------------------------------------------------------------------------------------


def _dense(segmentation, height, width):
    # Decoding a list avoids pycocotools' numpy-2 deprecation path for single RLEs.
    return None if segmentation is None else mask_utils.decode([segmentation])[:, :, 0].astype(bool)


def reference_precision_recall(dataset: dict, results: list[dict], params: YouTubeVISEvalParams):
    videos = {v["id"]: v for v in dataset["videos"]}
    category_ids = sorted(c["id"] for c in dataset["categories"])
    video_ids = sorted(videos)
    thresholds = list(params.iou_thresholds)
    recall_points = list(params.recall_thresholds)
    ranges = list(params.area_ranges.values())
    max_dets = list(params.max_detections)

    def track(entry, is_gt, index):
        v = videos[entry["video_id"]]
        masks = [_dense(s, v["height"], v["width"]) for s in entry["segmentations"]]
        if is_gt and "areas" in entry:
            areas = [a for a in entry["areas"] if a]
        else:
            areas = [int(m.sum()) for m in masks if m is not None and m.sum() > 0]
        return {
            "id": index + 1,
            "video": entry["video_id"],
            "cat": entry["category_id"],
            "score": entry.get("score", 1.0),
            "crowd": bool(entry.get("iscrowd", 0)) if is_gt else False,
            "masks": masks,
            "area": float(np.mean(areas)) if areas else 0.0,
        }

    gts = [track(a, True, i) for i, a in enumerate(dataset["annotations"])]
    dts = [track(r, False, i) for i, r in enumerate(results)]

    def video_iou(d, g):
        inter = union = 0
        for dm, gm in zip(d["masks"], g["masks"]):
            if dm is None and gm is None:
                continue
            dm = np.zeros_like(gm) if dm is None else dm
            gm = np.zeros_like(dm) if gm is None else gm
            inter += int((dm & gm).sum())
            union += int((dm | gm).sum())
        return inter / union if union > 0 else 0.0

    evaluations = {}  # (cat, area index, video) -> dict
    for cat in category_ids:
        for vid in video_ids:
            g_all = [g for g in gts if g["video"] == vid and g["cat"] == cat]
            d_all = [d for d in dts if d["video"] == vid and d["cat"] == cat]
            if not g_all and not d_all:
                continue
            d_sorted = sorted(d_all, key=lambda d: -d["score"])[: max_dets[-1]]  # Python's sort is stable
            for a_index, (lo, hi) in enumerate(ranges):
                g_ign = {g["id"]: g["crowd"] or g["area"] < lo or g["area"] > hi for g in g_all}
                g_sorted = sorted(g_all, key=lambda g: g_ign[g["id"]])
                dt_match = [[0] * len(d_sorted) for _ in thresholds]
                dt_ignore = [[False] * len(d_sorted) for _ in thresholds]
                for t_index, t in enumerate(thresholds):
                    gt_taken = {g["id"]: False for g in g_sorted}
                    for d_index, d in enumerate(d_sorted):
                        best_iou = min(t, 1 - 1e-10)
                        best = None
                        for g in g_sorted:
                            if gt_taken[g["id"]] and not g["crowd"]:
                                continue
                            if best is not None and not g_ign[best["id"]] and g_ign[g["id"]]:
                                break
                            iou = video_iou(d, g)
                            if iou < best_iou:
                                continue
                            best_iou, best = iou, g
                        if best is None:
                            continue
                        gt_taken[best["id"]] = True
                        dt_match[t_index][d_index] = best["id"]
                        dt_ignore[t_index][d_index] = g_ign[best["id"]]
                for t_index in range(len(thresholds)):
                    for d_index, d in enumerate(d_sorted):
                        if not dt_match[t_index][d_index] and (d["area"] < lo or d["area"] > hi):
                            dt_ignore[t_index][d_index] = True
                evaluations[cat, a_index, vid] = {
                    "scores": [d["score"] for d in d_sorted],
                    "match": dt_match,
                    "ignore": dt_ignore,
                    "num_regular": sum(not ign for ign in g_ign.values()),
                }

    T, R, K, A, M = len(thresholds), len(recall_points), len(category_ids), len(ranges), len(max_dets)
    precision = -np.ones((T, R, K, A, M))
    recall = -np.ones((T, K, A, M))
    for k, cat in enumerate(category_ids):
        for a in range(A):
            evals = [evaluations[cat, a, vid] for vid in video_ids if (cat, a, vid) in evaluations]
            if not evals:
                continue
            num_regular = sum(e["num_regular"] for e in evals)
            if num_regular == 0:
                continue
            for m, max_det in enumerate(max_dets):
                rows = []  # (score, position, per-threshold match, per-threshold ignore)
                for e in evals:
                    for d_index in range(min(max_det, len(e["scores"]))):
                        rows.append(
                            (
                                e["scores"][d_index],
                                len(rows),
                                [e["match"][t][d_index] for t in range(T)],
                                [e["ignore"][t][d_index] for t in range(T)],
                            )
                        )
                rows.sort(key=lambda row: (-row[0], row[1]))
                for t in range(T):
                    tp = fp = 0
                    recalls, precisions = [], []
                    for _, _, match, ignore in rows:
                        if ignore[t]:
                            pass
                        elif match[t]:
                            tp += 1
                        else:
                            fp += 1
                        recalls.append(tp / num_regular)
                        precisions.append(tp / (tp + fp + np.spacing(1)))
                    recall[t, k, a, m] = recalls[-1] if rows else 0
                    for i in range(len(precisions) - 2, -1, -1):
                        precisions[i] = max(precisions[i], precisions[i + 1])
                    for r_index, point in enumerate(recall_points):
                        position = next((i for i, value in enumerate(recalls) if value >= point), None)
                        precision[t, r_index, k, a, m] = precisions[position] if position is not None else 0.0
    return precision, recall


# ------------------------------------------------------------------------------------------------------------------
# Hand-computed cases
# ------------------------------------------------------------------------------------------------------------------


def toy_case():
    """One 10x10 video, 2 frames, two GTs (top half A, bottom half B) and three predictions.

    Video IoUs: P1-A = 78/100, P2-B = 68/100, P3-A = 92/100; P1, P3 do not touch B and P2 does not touch A.
    """
    h, w = 10, 10
    a = box_mask(h, w, 0, 5, 0, 10)
    b = box_mask(h, w, 5, 10, 0, 10)
    dataset = make_dataset(
        [(1, h, w, 2)],
        [(1, "shape")],
        [{"video_id": 1, "category_id": 1, "masks": [a, a]}, {"video_id": 1, "category_id": 1, "masks": [b, b]}],
    )
    p1_frame1 = box_mask(h, w, 0, 2, 0, 10) | box_mask(h, w, 2, 3, 0, 8)  # 28 px inside A
    p2_frame1 = box_mask(h, w, 5, 8, 0, 6)  # 18 px inside B
    p3_frame1 = box_mask(h, w, 0, 4, 0, 10) | box_mask(h, w, 4, 5, 0, 2)  # 42 px inside A
    results = [
        result(1, 1, 0.9, [a, p1_frame1]),
        result(1, 1, 0.8, [b, p2_frame1]),
        result(1, 1, 0.7, [a, p3_frame1]),
    ]
    return dataset, results


def test_toy_case_video_ious_are_the_hand_computed_ones():
    dataset, results = toy_case()
    ground_truth = load_youtube_vis_ground_truth(dataset)
    predictions = parse_youtube_vis_results(results, ground_truth)
    ious = compute_video_iou(predictions, ground_truth.tracks)
    np.testing.assert_allclose(ious, [[0.78, 0.0], [0.0, 0.68], [0.92, 0.0]], atol=1e-12)


def test_toy_case_ap_matches_hand_calculation():
    dataset, results = toy_case()
    metrics = evaluate_youtube_vis(dataset, results)
    # IoU thresholds .50-.65: P1->A, P2->B, P3 FP => precision 1 at every recall point: AP_t = 1.
    # .70, .75: P1 TP, P2 FP, P3 FP (A taken) => precision 1 up to recall .5 (51 of 101 points): AP_t = 51/101.
    # .80-.90: P1 FP, P2 FP, P3 -> A (A is free) => precision 1/3 up to recall .5: AP_t = 17/101. .95: AP_t = 0.
    assert metrics["AP50"] == pytest.approx(1.0)
    assert metrics["AP75"] == pytest.approx(51 / 101)
    assert metrics["AP"] == pytest.approx((4 + 2 * 51 / 101 + 3 * 17 / 101) / 10)
    # Recall: 1 at .50-.65, .5 at .70-.90, 0 at .95. With one detection (P1): .5 up to .75, then 0.
    assert metrics["AR100"] == pytest.approx((4 + 5 * 0.5) / 10)
    assert metrics["AR10"] == pytest.approx(metrics["AR100"])
    assert metrics["AR1"] == pytest.approx(6 * 0.5 / 10)
    assert metrics["AP_small"] == pytest.approx(metrics["AP"])  # mean areas are 50 px: all "small"
    assert metrics["AP_medium"] == -1 and metrics["AP_large"] == -1
    assert metrics["per_category_AP"] == {"shape": pytest.approx(metrics["AP"])}


def test_perfect_predictions_give_ap_one_and_no_predictions_give_zero():
    rng = np.random.default_rng(0)
    annotations = []
    for video_id in (1, 2):
        for category_id in (1, 2):
            masks = [rng.random((12, 16)) > 0.6 if t != 1 else None for t in range(3)]
            annotations.append({"video_id": video_id, "category_id": category_id, "masks": masks})
    dataset = make_dataset([(1, 12, 16, 3), (2, 12, 16, 3)], [(1, "a"), (2, "b")], annotations)
    perfect = evaluate_youtube_vis(dataset, ground_truth_as_results(dataset))
    for key in ("AP", "AP50", "AP75", "AP_small", "AR1", "AR10", "AR100"):
        assert perfect[key] == pytest.approx(1.0), key
    assert perfect["per_category_AP"] == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}
    empty = evaluate_youtube_vis(dataset, [])
    assert empty["AP"] == 0.0 and empty["AR100"] == 0.0 and empty["per_category_AP"] == {"a": 0.0, "b": 0.0}


def test_video_iou_is_a_ratio_of_sums_not_a_mean_of_frame_ious():
    # Frame 0: the prediction equals the 100 px GT; frame 1: the GT has 4 px and the prediction is absent (null).
    big, small = box_mask(10, 10, 0, 10, 0, 10), box_mask(10, 10, 0, 2, 0, 2)
    dataset = make_dataset([(1, 10, 10, 2)], [(1, "c")], [{"video_id": 1, "category_id": 1, "masks": [big, small]}])
    results = [result(1, 1, 0.9, [big, None])]
    ground_truth = load_youtube_vis_ground_truth(dataset)
    iou = compute_video_iou(parse_youtube_vis_results(results, ground_truth), ground_truth.tracks)
    assert iou[0, 0] == pytest.approx(100 / 104)  # the per-frame mean would be (1 + 0) / 2 = 0.5
    metrics = evaluate_youtube_vis(dataset, results)
    assert metrics["AP75"] == pytest.approx(1.0)
    assert metrics["AP"] == pytest.approx(1.0)  # 100/104 = 0.96 >= every threshold


def test_track_predicted_in_only_some_frames():
    # GT visible in 4 frames (25 px each); prediction exact in frames 0-1 and absent (null) in frames 2-3: IoU 0.5.
    square = box_mask(10, 10, 0, 5, 0, 5)
    dataset = make_dataset([(1, 10, 10, 4)], [(1, "c")], [{"video_id": 1, "category_id": 1, "masks": [square] * 4}])
    metrics = evaluate_youtube_vis(dataset, [result(1, 1, 0.5, [square, square, None, None])])
    assert metrics["AP50"] == pytest.approx(1.0)
    assert metrics["AP"] == pytest.approx(0.1)  # only the 0.50 threshold of ten
    # An empty (all-zero) mask is "no overlap" as well: same IoU as null frames.
    empty = np.zeros((10, 10), dtype=bool)
    assert evaluate_youtube_vis(dataset, [result(1, 1, 0.5, [square, square, empty, empty])])["AP"] == pytest.approx(
        0.1
    )


def test_frames_where_both_are_null_contribute_nothing():
    square = box_mask(8, 8, 0, 4, 0, 4)
    dataset = make_dataset(
        [(1, 8, 8, 3)], [(1, "c")], [{"video_id": 1, "category_id": 1, "masks": [None, square, None]}]
    )
    ground_truth = load_youtube_vis_ground_truth(dataset)
    both_null = parse_youtube_vis_results([result(1, 1, 1.0, [None, square, None])], ground_truth)
    extra_frame = parse_youtube_vis_results([result(1, 1, 1.0, [square, square, None])], ground_truth)
    assert compute_video_iou(both_null, ground_truth.tracks)[0, 0] == pytest.approx(1.0)
    assert compute_video_iou(extra_frame, ground_truth.tracks)[0, 0] == pytest.approx(0.5)
    # Mean area counts visible frames only: 16 px, not 16/3.
    assert ground_truth.tracks[0].average_area == pytest.approx(16.0)


def test_score_ordering_decides_the_matches():
    square = box_mask(10, 10, 0, 5, 0, 5)
    elsewhere = box_mask(10, 10, 5, 10, 5, 10)
    dataset = make_dataset([(1, 10, 10, 1)], [(1, "c")], [{"video_id": 1, "category_id": 1, "masks": [square]}])
    wrong_first = [result(1, 1, 0.9, [elsewhere]), result(1, 1, 0.1, [square])]
    right_first = [result(1, 1, 0.1, [elsewhere]), result(1, 1, 0.9, [square])]
    assert evaluate_youtube_vis(dataset, wrong_first)["AP"] == pytest.approx(0.5)  # FP then TP: precision 1/2
    assert evaluate_youtube_vis(dataset, right_first)["AP"] == pytest.approx(1.0)
    # A duplicate of a matched GT is a false positive that comes after the TP: AP stays 1, precision drops later.
    duplicate = [result(1, 1, 0.9, [square]), result(1, 1, 0.8, [square])]
    assert evaluate_youtube_vis(dataset, duplicate)["AP"] == pytest.approx(1.0)


def test_max_detections_cut_offs():
    square = box_mask(10, 10, 0, 5, 0, 5)
    elsewhere = box_mask(10, 10, 5, 10, 5, 10)
    dataset = make_dataset([(1, 10, 10, 1)], [(1, "c")], [{"video_id": 1, "category_id": 1, "masks": [square]}])
    # The best-scored detection misses; the GT is found only by the second one.
    metrics = evaluate_youtube_vis(dataset, [result(1, 1, 0.9, [elsewhere]), result(1, 1, 0.5, [square])])
    assert metrics["AR1"] == 0.0
    assert metrics["AR10"] == pytest.approx(1.0) and metrics["AR100"] == pytest.approx(1.0)
    # 101 misses before the true positive: beyond maxDets=100 the TP is dropped entirely.
    misses = [result(1, 1, 0.9, [elsewhere]) for _ in range(100)]
    assert evaluate_youtube_vis(dataset, [*misses, result(1, 1, 0.5, [square])])["AR100"] == 0.0
    assert evaluate_youtube_vis(dataset, [*misses[:99], result(1, 1, 0.5, [square])])["AR100"] == pytest.approx(1.0)


def test_category_without_ground_truth():
    square = box_mask(10, 10, 0, 5, 0, 5)
    dataset = make_dataset(
        [(1, 10, 10, 1)], [(1, "seen"), (2, "unseen")], [{"video_id": 1, "category_id": 1, "masks": [square]}]
    )
    results = [result(1, 1, 0.5, [square]), result(1, 2, 0.9, [square])]
    metrics = evaluate_youtube_vis(dataset, results)
    # The category without GT is -1 ("no ground truth") and does not lower the mean; its detections do not hurt
    # the other category even though they overlap the same pixels with a higher score.
    assert metrics["per_category_AP"] == {"seen": pytest.approx(1.0), "unseen": -1.0}
    assert metrics["AP"] == pytest.approx(1.0)


def test_crowd_ground_truth_is_ignored_and_matches_many_detections():
    h, w = 10, 10
    person = box_mask(h, w, 0, 5, 0, 5)
    crowd = box_mask(h, w, 5, 10, 0, 10)
    annotations = [
        {"video_id": 1, "category_id": 1, "masks": [person]},
        {"video_id": 1, "category_id": 1, "masks": [crowd], "iscrowd": 1},
    ]
    results = [
        result(1, 1, 0.9, [crowd]),
        result(1, 1, 0.8, [crowd]),  # a second match on the same crowd region: still ignored
        result(1, 1, 0.5, [person]),
    ]
    with_crowd = evaluate_youtube_vis(make_dataset([(1, h, w, 1)], [(1, "c")], annotations), results)
    assert with_crowd["AP"] == pytest.approx(1.0) and with_crowd["AR100"] == pytest.approx(1.0)
    annotations[1]["iscrowd"] = 0
    without_crowd = evaluate_youtube_vis(make_dataset([(1, h, w, 1)], [(1, "c")], annotations), results)
    # Now two regular GTs: TP (crowd GT), FP (duplicate), TP => precision 1 up to recall .5, 2/3 after.
    assert without_crowd["AP"] == pytest.approx((51 + 50 * 2 / 3) / 101)


def test_area_ranges_use_the_mean_visible_area():
    h, w = 400, 400
    large = box_mask(h, w, 0, 280, 0, 250)  # 70000 px > 256^2
    medium_in_one_frame = box_mask(h, w, 0, 150, 0, 150)  # 22500 px, visible in 1 of 2 frames: mean 22500
    small = box_mask(h, w, 390, 400, 390, 400)  # 100 px
    dataset = make_dataset(
        [(1, h, w, 2)],
        [(1, "c")],
        [
            {"video_id": 1, "category_id": 1, "masks": [large, large]},
            {"video_id": 1, "category_id": 1, "masks": [medium_in_one_frame, None]},
            {"video_id": 1, "category_id": 1, "masks": [small, small]},
        ],
    )
    small_miss = box_mask(h, w, 385, 390, 0, 4)  # 20 px, touches no GT
    medium_miss = box_mask(h, w, 0, 150, 260, 400)  # 21000 px in frame 0 only: mean 21000 (medium), not 10500
    results = [
        result(1, 1, 0.95, [small_miss, small_miss]),
        result(1, 1, 0.94, [medium_miss, None]),
        *ground_truth_as_results(dataset, score=0.5),
    ]
    metrics = evaluate_youtube_vis(dataset, results)
    # In each range: detections matched to out-of-range GTs and unmatched out-of-range detections are ignored.
    # large: TP only -> 1. medium: medium_miss FP, then TP -> 1/2. small: small_miss FP, then TP -> 1/2.
    assert metrics["AP_large"] == pytest.approx(1.0)
    assert metrics["AP_medium"] == pytest.approx(0.5)
    assert metrics["AP_small"] == pytest.approx(0.5)
    assert metrics["AR_small"] == pytest.approx(1.0)
    # all: two FPs then three TPs -> precision 3/5 at every recall point.
    assert metrics["AP"] == pytest.approx(0.6)
    # COCO's 32^2/96^2 split: the 22500 px GT and the medium miss are "large", "medium" has no GT.
    coco = evaluate_youtube_vis(dataset, results, params=YouTubeVISEvalParams(area_ranges=AREA_RANGES_COCO))
    assert coco["AP_medium"] == -1.0 and coco["AP_large"] == pytest.approx(2 / 3)


def test_equal_ious_go_to_the_later_ground_truth():
    # D covers A and B (4x4 each) exactly: IoU 16/32 = 0.5 with both. COCOeval keeps the LAST best candidate, so
    # D takes B (the later annotation) and D2 (= B, lower score) is a false positive at IoU 0.5.
    a, b = box_mask(8, 8, 0, 4, 0, 4), box_mask(8, 8, 0, 4, 4, 8)
    dataset = make_dataset(
        [(1, 8, 8, 1)],
        [(1, "c")],
        [{"video_id": 1, "category_id": 1, "masks": [a]}, {"video_id": 1, "category_id": 1, "masks": [b]}],
    )
    metrics = evaluate_youtube_vis(dataset, [result(1, 1, 0.9, [a | b]), result(1, 1, 0.8, [b])])
    assert metrics["AP50"] == pytest.approx(51 / 101)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_naive_reference_on_random_data(seed):
    rng = np.random.default_rng(seed)
    height, width = 12, 16
    videos, annotations, results = [], [], []
    categories = [(1, "a"), (2, "b"), (5, "c"), (9, "never annotated")]

    def random_track(length: int) -> list:
        masks = []
        top, left = rng.integers(0, height - 4), rng.integers(0, width - 4)
        for _ in range(length):
            if rng.random() < 0.25:
                masks.append(None)
                continue
            top = int(np.clip(top + rng.integers(-2, 3), 0, height - 2))
            left = int(np.clip(left + rng.integers(-2, 3), 0, width - 2))
            masks.append(
                box_mask(height, width, top, top + int(rng.integers(2, 8)), left, left + int(rng.integers(2, 9)))
            )
        return masks

    def perturbed(masks: list) -> list:
        # A prediction near a GT: each frame shifted by up to one pixel, dropped (null) or kept.
        out = []
        for mask in masks:
            if mask is None or rng.random() < 0.1:
                out.append(None if rng.random() < 0.8 else box_mask(height, width, 0, 3, 0, 3))
            elif rng.random() < 0.3:
                out.append(np.roll(mask, (int(rng.integers(-1, 2)), int(rng.integers(-1, 2))), axis=(0, 1)))
            else:
                out.append(mask)
        return out

    def random_score() -> float:
        return float(rng.choice([0.3, 0.5, 0.7])) if rng.random() < 0.3 else float(rng.random())  # some ties

    for video_id in (3, 7, 11, 12, 20):
        length = int(rng.integers(1, 4))
        videos.append((video_id, height, width, length))
        for _ in range(int(rng.integers(0, 5))):
            category = categories[int(rng.integers(0, 3))][0]
            masks = random_track(length)
            annotations.append(
                {"video_id": video_id, "category_id": category, "masks": masks, "iscrowd": int(rng.random() < 0.15)}
            )
            for _ in range(int(rng.integers(1, 3))):
                wrong_class = rng.random() < 0.15
                predicted = categories[int(rng.integers(0, 3))][0] if wrong_class else category
                results.append(result(video_id, predicted, random_score(), perturbed(masks)))
        for _ in range(int(rng.integers(0, 3))):
            results.append(
                result(video_id, categories[int(rng.integers(0, 4))][0], random_score(), random_track(length))
            )
    dataset = make_dataset(videos, categories, annotations)
    # Small area ranges and a low maxDets so every branch of the matcher and accumulator is exercised.
    params = YouTubeVISEvalParams(
        max_detections=(1, 2, 100),
        area_ranges={"all": (0, 1e10), "small": (0, 20), "medium": (20, 40), "large": (40, 1e10)},
    )
    ground_truth = load_youtube_vis_ground_truth(dataset)
    precision, recall = compute_precision_recall(
        ground_truth, parse_youtube_vis_results(results, ground_truth), params
    )
    expected_precision, expected_recall = reference_precision_recall(dataset, results, params)
    np.testing.assert_allclose(precision, expected_precision, atol=1e-12)
    np.testing.assert_allclose(recall, expected_recall, atol=1e-12)
    # The data are neither trivial nor empty: some settings are perfect, some partial, some without GT.
    assert (precision == 1).any() and ((precision > 0) & (precision < 1)).any() and (precision == -1).any()


def test_many_detections_are_fast():
    import time

    rng = np.random.default_rng(0)
    height, width, length = 36, 64, 6
    videos, annotations, results = [], [], []
    for video_id in range(1, 201):
        videos.append((video_id, height, width, length))
        for instance in range(2):
            masks = [box_mask(height, width, 2 + instance * 16, 16 + instance * 16, t, 20 + t) for t in range(length)]
            annotations.append({"video_id": video_id, "category_id": 1 + instance, "masks": masks})
            for _ in range(5):
                shift = int(rng.integers(0, 6))
                jittered = [
                    box_mask(height, width, 2 + instance * 16 + shift, 16 + instance * 16, t, 20 + t)
                    for t in range(length)
                ]
                results.append(result(video_id, 1 + instance, float(rng.random()), jittered))
    dataset = make_dataset(videos, [(1, "a"), (2, "b")], annotations)
    start = time.perf_counter()
    metrics = evaluate_youtube_vis(dataset, results)
    elapsed = time.perf_counter() - start
    assert 0 < metrics["AP"] < 1
    assert elapsed < 10, f"2000 detections took {elapsed:.1f}s"


# ------------------------------------------------------------------------------------------------------------------
# Input validation
# ------------------------------------------------------------------------------------------------------------------


def test_bad_results_raise_clear_errors():
    dataset, results = toy_case()
    good = results[0]
    cases = [
        ({**good, "video_id": 99}, "unknown video_id 99"),
        ({**good, "category_id": 42}, "unknown category_id 42"),
        ({**good, "segmentations": good["segmentations"][:1]}, "'segmentations' has 1 frames, expected 2"),
        (
            {**good, "segmentations": [good["segmentations"][0], {"size": [5, 10], "counts": "xyz"}]},
            r"segmentations\[1\]: RLE size \[5, 10\] does not match",
        ),
        ({k: v for k, v in good.items() if k != "score"}, r"missing key\(s\) \['score'\]"),
        ({**good, "score": float("nan")}, "finite"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message) as error:
            evaluate_youtube_vis(dataset, [results[1], bad])
        assert "results[1]" in str(error.value)


def test_bad_annotations_raise_clear_errors():
    dataset, _ = toy_case()
    del dataset["annotations"][1]["segmentations"]
    with pytest.raises(ValueError, match=r"annotations\[1\].*missing key\(s\) \['segmentations'\]"):
        evaluate_youtube_vis(dataset, [])
    dataset, _ = toy_case()
    dataset["annotations"][0]["segmentations"].append(None)
    with pytest.raises(ValueError, match=r"annotations\[0\].*3 frames, expected 2"):
        evaluate_youtube_vis(dataset, [])


def test_polygon_ground_truth_is_supported():
    # A 4x4 square as a polygon and as a mask; pycocotools rasterises polygons the COCO way.
    polygon = [[2.0, 2.0, 6.0, 2.0, 6.0, 6.0, 2.0, 6.0]]
    dataset = {
        "videos": [{"id": 1, "height": 8, "width": 8, "length": 1}],
        "categories": [{"id": 1, "name": "c"}],
        "annotations": [{"id": 1, "video_id": 1, "category_id": 1, "segmentations": [polygon], "areas": [16]}],
    }
    as_rle = mask_utils.merge(mask_utils.frPyObjects(polygon, 8, 8))
    results = [
        {"video_id": 1, "category_id": 1, "score": 1.0, "segmentations": [rle(mask_utils.decode([as_rle])[:, :, 0])]}
    ]
    assert evaluate_youtube_vis(dataset, results)["AP"] == pytest.approx(1.0)


def test_format_metrics_table_lists_every_metric():
    dataset, results = toy_case()
    table = format_metrics_table(evaluate_youtube_vis(dataset, results))
    assert "AP50" in table and "100.00" in table and "shape" in table and "n/a" in table


# ------------------------------------------------------------------------------------------------------------------
# evaluate integration and CLI
# ------------------------------------------------------------------------------------------------------------------


def _video_rows(dataset: dict, results: list[dict]) -> tuple[list[list[dict]], list[int]]:
    from tevit_hf.evaluation import group_results_by_video

    return group_results_by_video(results, [video["id"] for video in dataset["videos"]])


def random_dataset_and_results(seed: int = 0):
    rng = np.random.default_rng(seed)
    annotations, results = [], []
    for video_id in (1, 2, 3, 4):
        for category_id in (1, 2):
            masks = [rng.random((12, 16)) > 0.5 for _ in range(2)]
            annotations.append({"video_id": video_id, "category_id": category_id, "masks": masks})
            noisy = [mask ^ (rng.random((12, 16)) > 0.8) for mask in masks]
            results.append(result(video_id, category_id, float(rng.random()), noisy))
    dataset = make_dataset([(v, 12, 16, 2) for v in (1, 2, 3, 4)], [(1, "a"), (2, "b")], annotations)
    return dataset, results


def test_metric_add_batch_equals_direct_function(tmp_path):
    from tevit_hf.evaluation import YouTubeVISAP

    dataset, results = random_dataset_and_results()
    expected = evaluate_youtube_vis(dataset, results)
    assert 0 < expected["AP"] < 1
    predictions, references = _video_rows(dataset, results)
    # bytes counts are accepted and converted to str
    predictions[0][0]["segmentations"][0]["counts"] = predictions[0][0]["segmentations"][0]["counts"].encode()
    metric = YouTubeVISAP(annotations=dataset, cache_dir=str(tmp_path))
    metric.add_batch(predictions=predictions[:2], references=references[:2])
    metric.add_batch(predictions=predictions[2:], references=references[2:])
    assert metric.compute() == expected
    # Annotations at compute time, and scoring a subset of the videos against that subset's ground truth only.
    subset = YouTubeVISAP(cache_dir=str(tmp_path))
    subset.add_batch(predictions=predictions[:2], references=references[:2])
    expected_subset = evaluate_youtube_vis(
        dataset, [r for r in results if r["video_id"] in references[:2]], video_ids=references[:2]
    )
    assert subset.compute(annotations=dataset) == expected_subset
    assert expected_subset != expected
    # A video added with no predictions still counts its ground truths as misses; area ranges at compute time.
    without_last = [r for r in results if r["video_id"] != references[-1]]
    empty_row = YouTubeVISAP(annotations=dataset, cache_dir=str(tmp_path))
    empty_row.add_batch(predictions=[*predictions[:-1], []], references=references)
    coco = YouTubeVISEvalParams(area_ranges=AREA_RANGES_COCO)
    assert empty_row.compute(area_ranges="coco") == evaluate_youtube_vis(dataset, without_last, params=coco)
    # A row whose entries belong to another video is rejected.
    with pytest.raises(ValueError, match="differs from its reference"):
        YouTubeVISAP(annotations=dataset, cache_dir=str(tmp_path)).add_batch(
            predictions=[predictions[1]], references=[references[0]]
        )


def test_metric_distributed_two_processes(tmp_path):
    from tevit_hf.evaluation import YouTubeVISAP

    dataset, results = random_dataset_and_results(seed=1)
    predictions, references = _video_rows(dataset, results)
    outputs = {}

    def worker(process_id: int) -> None:
        metric = YouTubeVISAP(
            annotations=dataset,
            num_process=2,
            process_id=process_id,
            experiment_id="test_distributed",
            cache_dir=str(tmp_path),
            timeout=30,
        )
        rows = slice(process_id, None, 2)  # each process evaluates every other video
        metric.add_batch(predictions=predictions[rows], references=references[rows])
        outputs[process_id] = metric.compute()

    threads = [threading.Thread(target=worker, args=(process_id,)) for process_id in (1, 0)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert outputs[1] is None
    assert outputs[0] == evaluate_youtube_vis(dataset, results)


def test_evaluate_load_of_module_folder_works_offline(tmp_path, monkeypatch):
    import evaluate

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True, raising=False)
    dataset, results = random_dataset_and_results(seed=2)
    metric = evaluate.load(str(MODULE_DIR), annotations=dataset, cache_dir=str(tmp_path))
    assert isinstance(metric, evaluate.Metric)
    predictions, references = _video_rows(dataset, results)
    assert metric.compute(predictions=predictions, references=references) == evaluate_youtube_vis(dataset, results)


def test_cli_scores_a_results_file_and_writes_metrics_json(tmp_path, monkeypatch, capsys):
    from tevit_hf.commands import cli

    dataset, results = toy_case()
    annotations_path, results_path = tmp_path / "ann.json", tmp_path / "results.json"
    annotations_path.write_text(json.dumps(dataset))
    results_path.write_text(json.dumps(results))
    output_dir = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["tevit-hf"])
    code = cli.main(
        [
            "evaluate",
            "--annotations",
            str(annotations_path),
            "--results",
            str(results_path),
            "--output-dir",
            str(output_dir),
        ]
    )
    assert code == 0
    written = json.loads((output_dir / "metrics.json").read_text())
    assert written["AP75"] == pytest.approx(51 / 101)
    assert written["per_category_AP"]["shape"] == pytest.approx(written["AP"])
    assert "AP75" in capsys.readouterr().out
    assert sorted(path.name for path in output_dir.iterdir()) == ["metrics.json"]  # no temporary file left


def test_cli_scores_fifty_generated_videos_with_their_ground_truth_as_ap_one(tmp_path, monkeypatch):
    from tevit_hf.commands import cli
    from tevit_hf.data.synthetic import generate_synthetic_vis_dataset

    annotations_path = generate_synthetic_vis_dataset(
        tmp_path / "data", num_videos=50, num_frames=3, height=32, width=48, mp4="none", seed=0
    )
    dataset = json.loads(Path(annotations_path).read_text())
    results_path = tmp_path / "results.json"
    results_path.write_text(json.dumps(ground_truth_as_results(dataset, score=0.9)))
    monkeypatch.setattr(sys, "argv", ["tevit-hf"])
    code = cli.main(["evaluate", "--annotations", str(annotations_path), "--results", str(results_path)])
    assert code == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())  # default output dir: the results' folder
    assert len(dataset["videos"]) == 50 and len(dataset["annotations"]) >= 50
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AR1"] > 0 and metrics["AR10"] == pytest.approx(1.0)
    assert all(value == pytest.approx(1.0) for value in metrics["per_category_AP"].values())
    # Dropping one video's predictions lowers the score (the metric is not trivially 1).
    kept = [entry for entry in ground_truth_as_results(dataset) if entry["video_id"] != dataset["videos"][0]["id"]]
    assert evaluate_youtube_vis(annotations_path, kept)["AR100"] < 1.0


def _tiny_saved_model(tmp_path: Path, categories: list[dict]) -> Path:
    import torch
    from conftest import tiny_config

    from tevit_hf import TeViTForVideoInstanceSegmentation, TeViTImageProcessor

    torch.manual_seed(0)
    config = tiny_config(
        num_labels=len(categories),
        id2label={label: category["name"] for label, category in enumerate(categories)},
    )
    model_dir = tmp_path / "model"
    TeViTForVideoInstanceSegmentation(config).save_pretrained(model_dir)
    TeViTImageProcessor(size={"longest_edge": 96, "shortest_edge": 64}).save_pretrained(model_dir)
    return model_dir


@pytest.mark.parametrize("near_online", [False, True])
def test_cli_runs_inference_and_scores_it(tmp_path, monkeypatch, near_online):
    from tevit_hf.commands import cli
    from tevit_hf.data.synthetic import generate_synthetic_vis_dataset

    annotations_path = generate_synthetic_vis_dataset(
        tmp_path / "data", num_videos=2, num_frames=4, height=64, width=96, mp4="none", seed=1
    )
    dataset = json.loads(Path(annotations_path).read_text())
    model_dir = _tiny_saved_model(tmp_path, dataset["categories"])
    output_dir = tmp_path / "out"
    arguments = ["evaluate", "--model", str(model_dir), "--annotations", str(annotations_path)]
    arguments += ["--frames-dir", str(tmp_path / "data" / "JPEGImages"), "--output-dir", str(output_dir)]
    arguments += ["--max-videos", "1", "--device", "cpu"]
    if near_online:
        arguments += ["--near-online", "--clip-length", "3", "--stride", "2"]  # clips [0, 3) and [1, 4)
    monkeypatch.setattr(sys, "argv", ["tevit-hf"])
    assert cli.main(arguments) == 0
    results = json.loads((output_dir / "results.json").read_text())
    first_video = dataset["videos"][0]
    assert results and {entry["video_id"] for entry in results} == {first_video["id"]}
    category_ids = {category["id"] for category in dataset["categories"]}
    for entry in results:
        assert entry["category_id"] in category_ids and 0.0 <= entry["score"] <= 1.0
        assert len(entry["segmentations"]) == 4
        assert all(
            s is None or s["size"] == [first_video["height"], first_video["width"]] for s in entry["segmentations"]
        )
    metrics = json.loads((output_dir / "metrics.json").read_text())
    # Scored against the first video only, and consistent with scoring the written results file directly.
    assert metrics == evaluate_youtube_vis(annotations_path, results, video_ids=[first_video["id"]])
    assert -1.0 <= metrics["AP"] <= 1.0


def test_label_to_category_mapping_by_name_then_by_sorted_id():
    from types import SimpleNamespace

    from tevit_hf.evaluation.inference import dataset_label_mapping

    info = SimpleNamespace(id2label={0: "cat", 1: "dog"}, label2category_id={0: 3, 1: 7}, num_labels=2)
    assert dataset_label_mapping({0: "dog", 1: "cat"}, info) == {0: 7, 1: 3}
    assert dataset_label_mapping({0: "LABEL_0", 1: "LABEL_1"}, info) == {0: 3, 1: 7}
    with pytest.raises(ValueError, match="cannot be matched"):
        dataset_label_mapping({0: "LABEL_0"}, info)


def test_demo_and_evaluate_map_labels_with_the_one_rule():
    from types import SimpleNamespace

    # The demo maps with `map_labels_to_categories` on the ground truth's categories, evaluate (and the training
    # hook) with `dataset_label_mapping` on a loaded dataset: the same rule.
    from tevit_hf.evaluation.inference import dataset_label_mapping
    from tevit_hf.image_processing_tevit import map_labels_to_categories

    categories = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]
    info = SimpleNamespace(id2label={0: "cat", 1: "dog"}, label2category_id={0: 3, 1: 7})
    for id2label in ({0: "dog", 1: "cat"}, {0: "LABEL_0", 1: "LABEL_1"}):
        expected = map_labels_to_categories(id2label, categories)
        assert dataset_label_mapping(id2label, info) == expected
    assert map_labels_to_categories({0: "cat"}, {3: "cat", 7: "dog"}) == {0: 3}
    with pytest.raises(ValueError, match="cannot be matched"):
        map_labels_to_categories({0: "LABEL_0"}, categories)
