"""Centre-heatmap detection head outputs to boxes (CenterNet: Zhou et al., "Objects as
Points", 2019, with FCOS-style edge distances: Tian et al., 2019), with non-maximum
suppression implemented here (no torchvision).

The network's five output channels on the working grid are: 0 the centre heatmap logit,
1 to 4 the log distances (working pixels) from the pixel centre to the box's left, top, right
and bottom edges. Every pixel near a centre predicts the whole box, so a peak one pixel off
still gives the right box, and the sizes are not one value per object pulled to the mean.
A box's score is its centre's heatmap probability; an image's probability is its highest
heatmap value.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

HEAT, LOG_L, LOG_T, LOG_R, LOG_B = 0, 1, 2, 3, 4
EDGES = [LOG_L, LOG_T, LOG_R, LOG_B]
OUT_CHANNELS = 5

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


def box_maps(out: torch.Tensor, limit: float) -> torch.Tensor:
    """Each pixel's predicted box (x0, y0, x1, y1) in working pixels: (4, H, W) from the
    network output (5, H, W); distances clamped to ``limit``."""
    d = torch.exp(out[EDGES].float().clamp(max=float(np.log(limit))))
    h, w = out.shape[-2:]
    ys = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w) + 0.5
    xs = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w) + 0.5
    return torch.stack([xs - d[0], ys - d[1], xs + d[2], ys + d[3]])


def smooth_boxes(out: torch.Tensor, window: int, limit: float) -> torch.Tensor:
    """Each pixel's box averaged over ``window`` x ``window`` pixels, weighted by the heatmap
    probability ((5, H, W) in, (4, H, W) out): neighbours of a peak vote on its edges."""
    boxes = box_maps(out, limit)
    if window <= 1:
        return boxes
    weight = torch.sigmoid(out[HEAT].float())[None, None]
    pad = window // 2
    num = F.avg_pool2d(boxes[None] * weight, window, stride=1, padding=pad,
                       count_include_pad=False)
    den = F.avg_pool2d(weight, window, stride=1, padding=pad, count_include_pad=False)
    return (num / den.clamp(min=1e-6))[0]


def decode(out: torch.Tensor, extent: tuple[int, int], min_score: float, kernel: int,
           iou_threshold: float, max_detections: int, size_window: int = 1
           ) -> tuple[float, list[WorkingBox]]:
    """(image probability, boxes on the working grid highest first) from one image's output
    (5, size, size); only the image's ``extent`` (rows, cols) is searched, not the padding.
    Each box is the heatmap-weighted mean of the boxes predicted over ``size_window`` pixels
    around its peak."""
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
    grid = smooth_boxes(out, size_window, 2.0 * max(h, w))
    boxes = grid[:, ys, xs].T.numpy().astype(np.float64)
    boxes[:, 2] = np.maximum(boxes[:, 2], boxes[:, 0] + 1.0)
    boxes[:, 3] = np.maximum(boxes[:, 3], boxes[:, 1] + 1.0)
    sc = scores.numpy().astype(np.float64)
    keep = nms(boxes, sc, iou_threshold)[:max_detections]
    return prob, [(float(boxes[i, 0]), float(boxes[i, 1]), float(boxes[i, 2]),
                   float(boxes[i, 3]), float(sc[i])) for i in keep]


def flip_output(out: torch.Tensor) -> torch.Tensor:
    """The output of a left-right mirrored input, mapped back onto the original image: the
    maps mirrored and the left and right distances swapped ((n, 5, H, W))."""
    back = out.flip(-1)
    return back[:, [HEAT, LOG_R, LOG_T, LOG_L, LOG_B]]


def targets(boxes: list[tuple[float, float, float, float]], size: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training targets on a (size, size) grid for working-grid boxes: the centre heatmap
    (an anisotropic Gaussian per box, max where they overlap), the log distances from each
    pixel centre to the four edges of its box (4, size, size), and the weight of the box
    loss (the heatmap where > 0.3 and the pixel lies inside its box: boxes are learnt around
    centres)."""
    heat = np.zeros((size, size), dtype=np.float32)
    dist = np.zeros((4, size, size), dtype=np.float32)
    inside = np.zeros((size, size), dtype=bool)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    for x0, y0, x1, y1 in boxes:
        bw, bh = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        sx, sy = max(bw / 6, 1.0), max(bh / 6, 1.0)
        g = np.exp(-((xx - cx) ** 2 / (2 * sx ** 2) + (yy - cy) ** 2 / (2 * sy ** 2)))
        ci, cj = min(max(int(cy), 0), size - 1), min(max(int(cx), 0), size - 1)
        g[ci, cj] = 1.0
        better = g > heat
        heat = np.where(better, g, heat)
        edges = (xx - x0, yy - y0, x1 - xx, y1 - yy)
        for k, e in enumerate(edges):
            dist[k][better] = np.log(np.maximum(e, 0.5))[better]
        inside = np.where(better, (xx > x0) & (xx < x1) & (yy > y0) & (yy < y1), inside)
    weight = ((heat > 0.3) & inside).astype(np.float32) * heat
    return heat, dist, weight
