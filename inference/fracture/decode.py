"""Centre-heatmap detection head outputs to boxes (CenterNet: Zhou et al., "Objects as
Points", 2019), with non-maximum suppression implemented here (no torchvision).

The network's three output channels on the working grid are: 0 the centre heatmap logit,
1 and 2 log(box width) and log(box height) in working pixels. A box's score is its centre's
heatmap probability; an image's probability is its highest heatmap value.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

HEAT, LOG_W, LOG_H = 0, 1, 2
OUT_CHANNELS = 3

WorkingBox = tuple[float, float, float, float, float]  # x0, y0, x1, y1, score


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box ``a`` (4,) against boxes ``b`` (n, 4), all (x0, y0, x1, y1)."""
    ix = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    iy = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = ix * iy
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy NMS: indices kept, highest score first; a box whose IoU with a kept box exceeds
    ``iou_threshold`` is dropped."""
    order = list(np.argsort(-scores, kind="stable"))
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(int(i))
        if not order:
            break
        rest = np.array(order)
        overlap = iou(boxes[i], boxes[rest])
        order = [int(j) for j, o in zip(rest, overlap, strict=True) if o <= iou_threshold]
    return keep


def smooth_sizes(out: torch.Tensor, window: int) -> torch.Tensor:
    """Log width/height maps averaged over ``window`` x ``window`` pixels, weighted by the
    heatmap probability (3, H, W in, 2, H, W out)."""
    sizes = out[[LOG_W, LOG_H]].float()
    if window <= 1:
        return sizes
    weight = torch.sigmoid(out[HEAT].float())[None, None]
    pad = window // 2
    num = F.avg_pool2d(sizes[None] * weight, window, stride=1, padding=pad,
                       count_include_pad=False)
    den = F.avg_pool2d(weight, window, stride=1, padding=pad, count_include_pad=False)
    return (num / den.clamp(min=1e-6))[0]


def decode(out: torch.Tensor, extent: tuple[int, int], min_score: float, kernel: int,
           iou_threshold: float, max_detections: int, size_window: int = 1
           ) -> tuple[float, list[WorkingBox]]:
    """(image probability, boxes on the working grid highest first) from one image's output
    (3, size, size); only the image's ``extent`` (rows, cols) is searched, not the padding.
    Each box's size is the heatmap-weighted mean over ``size_window`` pixels around its peak."""
    h, w = extent
    heat = torch.sigmoid(out[HEAT].float())[:h, :w]
    prob = float(heat.max()) if heat.numel() else 0.0
    pooled = F.max_pool2d(heat[None, None], kernel, stride=1, padding=kernel // 2)[0, 0]
    peaks = (heat == pooled) & (heat >= min_score)
    ys, xs = torch.nonzero(peaks, as_tuple=True)
    if ys.numel() == 0:
        return prob, []
    scores = heat[ys, xs]
    top = torch.argsort(scores, descending=True)[: 4 * max_detections]
    ys, xs, scores = ys[top], xs[top], scores[top]
    sizes = smooth_sizes(out, size_window)
    bw = torch.exp(sizes[0][ys, xs]).clamp(1.0, 4.0 * max(h, w))
    bh = torch.exp(sizes[1][ys, xs]).clamp(1.0, 4.0 * max(h, w))
    cx, cy = xs.float() + 0.5, ys.float() + 0.5
    boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1).numpy()
    boxes = boxes.astype(np.float64)
    sc = scores.numpy().astype(np.float64)
    keep = nms(boxes, sc, iou_threshold)[:max_detections]
    return prob, [(float(boxes[i, 0]), float(boxes[i, 1]), float(boxes[i, 2]),
                   float(boxes[i, 3]), float(sc[i])) for i in keep]


def targets(boxes: list[tuple[float, float, float, float]], size: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training targets on a (size, size) grid for working-grid boxes: the centre heatmap
    (an anisotropic Gaussian per box, max where they overlap), log width/height, and the
    weight of the size loss (the heatmap where > 0.3: the size is learnt around centres)."""
    heat = np.zeros((size, size), dtype=np.float32)
    logwh = np.zeros((2, size, size), dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    for x0, y0, x1, y1 in boxes:
        bw, bh = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        sx, sy = max(bw / 6, 1.0), max(bh / 6, 1.0)
        g = np.exp(-((xx - cx) ** 2 / (2 * sx ** 2) + (yy - cy) ** 2 / (2 * sy ** 2)))
        ci, cj = min(int(cy), size - 1), min(int(cx), size - 1)
        g[ci, cj] = 1.0
        better = g > heat
        heat = np.where(better, g, heat)
        logwh[0][better] = np.log(bw)
        logwh[1][better] = np.log(bh)
    weight = (heat > 0.3).astype(np.float32) * heat
    return heat, logwh, weight
