"""A picture of detections: a few val images with ground truth and each model's boxes, masks and labels."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .plots import save_figure

SCORE_THRESHOLD = 0.5  # confident detections are drawn solid (COCOeval itself scores all of them)
MAX_DRAWN = 10
WEAK_DRAWN = 3  # where none reaches the threshold, the best few are drawn dashed: a short fine-tune scores low


def shown_detections(scores, threshold: float = SCORE_THRESHOLD) -> tuple[list[int], bool]:
    """(indices to draw, whether they are confident): those scoring >= threshold (at most MAX_DRAWN), else the
    WEAK_DRAWN best, so that a picture of a weak detector still shows what it found."""
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    confident = [i for i in order if float(scores[i]) >= threshold][:MAX_DRAWN]
    return (confident, True) if confident else (order[:WEAK_DRAWN], False)


def plot_predictions(dataset, image_ids, outputs: dict[str, dict[int, dict]], path: Path) -> None:
    """Rows: ground truth, then one per model (outputs: name -> image id -> torchvision output)."""
    import matplotlib

    matplotlib.use("Agg")  # no display in stages / CI
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    names = dataset.category_names
    rows = ["ground truth", *outputs]
    fig, axes = plt.subplots(len(rows), len(image_ids), figsize=(2.4 * len(image_ids), 2.5 * len(rows)),
                             squeeze=False)
    colours = plt.get_cmap("tab10")
    for c, image_id in enumerate(image_ids):
        image, target = dataset[dataset.image_ids.index(image_id)]
        img = image.permute(1, 2, 0).numpy()
        for r, row in enumerate(rows):
            ax = axes[r][c]
            if row == "ground truth":
                boxes, labels, masks = target["boxes"], target["labels"], target["masks"].numpy().astype(bool)
                scores = [None] * len(labels)
            else:
                out = outputs[row][image_id]
                sel, confident = shown_detections(out["scores"].tolist())
                boxes, labels, scores = out["boxes"][sel], out["labels"][sel], out["scores"][sel].tolist()
                masks = (out["masks"][sel, 0] > 0.5).numpy() if confident else np.zeros((len(sel), 1, 1), bool)
            shown = img.copy()
            weak = row != "ground truth" and not confident
            for k, (box, label, score) in enumerate(zip(boxes.tolist(), labels.tolist(), scores)):
                colour = np.array(colours(int(label) % 10)[:3])
                if not weak:
                    shown[masks[k]] = 0.5 * shown[masks[k]] + 0.5 * colour
                ax.add_patch(Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1], fill=False,
                                       edgecolor=colour, linewidth=1.2, linestyle="--" if weak else "-"))
                text = names.get(int(label), str(label)) + ("" if score is None else f" {score:.2f}")
                ax.text(box[0], box[1], text, fontsize=6, color="white", va="bottom",
                        bbox={"facecolor": colour, "alpha": 0.8, "pad": 0.5, "linewidth": 0})
            ax.imshow(shown.clip(0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(row, fontsize=9)
        axes[0][c].set_title(f"val image {image_id}", fontsize=8)
    fig.suptitle(f"Mask R-CNN detections: score >= {SCORE_THRESHOLD} solid with masks; where none reaches it, "
                 f"the {WEAK_DRAWN} best dashed (boxes only)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
