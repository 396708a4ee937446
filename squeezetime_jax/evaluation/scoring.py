"""Per-video aggregation of per-view logits, and the accuracies of the protocols.

The test protocols score a video by the softmax probabilities averaged over its
views (clips x crops), as the released evaluation does. Everything here is plain
numpy on the host, over the views gathered from every process, so it can be
checked by hand and re-run on a saved npz.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class VideoScores:
    """Per-video results: row i is video i of the split."""

    probabilities: np.ndarray  # float32 (num_videos, num_classes): mean softmax over views
    labels: np.ndarray  # int32 (num_videos,)
    readable: np.ndarray  # bool (num_videos,): False where the video did not decode


def softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def check_views(
    views: dict[str, np.ndarray], num_videos: int, views_per_video: int, num_crops: int
) -> None:
    """Raises unless every (video, clip, crop) of the split occurs exactly once."""
    video = np.asarray(views["video_index"], np.int64)
    view = np.asarray(views["clip_index"], np.int64) * num_crops + np.asarray(
        views["crop_index"], np.int64
    )
    if video.size and (video.min() < 0 or video.max() >= num_videos):
        raise ValueError(
            f"view of video {int(video.min() if video.min() < 0 else video.max())}"
            f" outside the split's {num_videos} videos"
        )
    if view.size and (view.min() < 0 or view.max() >= views_per_video):
        raise ValueError(f"view index outside 0..{views_per_video - 1}")
    counts = np.bincount(
        video * views_per_video + view, minlength=num_videos * views_per_video
    )
    if np.any(counts != 1):
        missing = int(np.sum(counts == 0))
        repeated = int(np.sum(counts > 1))
        raise ValueError(
            f"expected each of the {num_videos} x {views_per_video} views exactly "
            f"once; {missing} missing, {repeated} seen more than once"
        )


def average_views(
    views: dict[str, np.ndarray], labels: np.ndarray, views_per_video: int, num_crops: int
) -> VideoScores:
    """Mean softmax probability per video over its views (checked to be complete)."""
    labels = np.asarray(labels, np.int32)
    num_videos = len(labels)
    check_views(views, num_videos, views_per_video, num_crops)
    video = np.asarray(views["video_index"], np.int64)
    probs = softmax(views["logits"])
    sums = np.zeros((num_videos, probs.shape[-1]), np.float64)
    np.add.at(sums, video, probs)
    failed = np.zeros(num_videos, bool)
    if "decode_failed" in views:
        np.logical_or.at(failed, video, np.asarray(views["decode_failed"], bool))
    return VideoScores(
        probabilities=(sums / views_per_video).astype(np.float32),
        labels=labels,
        readable=~failed,
    )


def accuracies(
    probabilities: np.ndarray, labels: np.ndarray, num_classes: int | None = None
) -> dict[str, float]:
    """Top-1, top-5 and mean-class (mean over classes present of per-class top-1)."""
    probabilities = np.asarray(probabilities)
    labels = np.asarray(labels, np.int64)
    if len(labels) == 0:
        return {
            "top1": float("nan"),
            "top5": float("nan"),
            "mean_class_accuracy": float("nan"),
        }
    num_classes = num_classes or probabilities.shape[-1]
    k = min(5, probabilities.shape[-1])
    # Stable sort on the negated scores: ties go to the lower class index, as argmax does.
    top = np.argsort(-probabilities, axis=-1, kind="stable")[:, :k]
    hit1 = top[:, 0] == labels
    hit5 = np.any(top == labels[:, None], axis=-1)
    per_class_total = np.bincount(labels, minlength=num_classes)
    per_class_hits = np.bincount(labels, weights=hit1, minlength=num_classes)
    present = per_class_total > 0
    return {
        "top1": float(hit1.mean()),
        "top5": float(hit5.mean()),
        "mean_class_accuracy": float(
            np.mean(per_class_hits[present] / per_class_total[present])
        ),
    }


def view_accuracies(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Single-view accuracies (each view scored on its own), for comparison."""
    result = accuracies(softmax(logits), labels)
    return {"view_top1": result["top1"], "view_top5": result["top5"]}
