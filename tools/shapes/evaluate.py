#!/usr/bin/env python3
"""Accuracy of a GroupViT on held-out generated scenes, segmented by transformers with NVlabs'
inference (tools/reference/nvlabs.py: `official_encode_decode`), for the figures the Rust test
prints beside its own.

Each scene is segmented with its own phrases plus two distractor phrases (the labels a user would
type); background is where the best label scores under the threshold. Intersections and unions are
summed over all scenes per class (background + every colour–shape phrase): mIoU is their mean over the
classes that occur in the ground truth or the prediction; pixel accuracy counts all pixels.

Usage: evaluate.py MODEL_DIR OUT.json [--first 0 --count 200 --size 64 --threshold T --side S]
       (without --threshold: the best of a sweep is reported; the shipped model's threshold and
       side, the short side scenes are resized to, are in its config's `segmentation` section)
Writes the scenes to DIR when --write-scenes DIR is given (PNG pictures, mask PNGs and
labels.json), which is what the Rust accuracy test reads.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "reference"))
from evalset import CLASSES, load_scenes, write_scenes  # noqa: E402,F401
from nvlabs import IMAGENET_MEAN, IMAGENET_STD, interpolating, official_encode_decode  # noqa: E402

MEAN, STD = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
# Finer near the top, where a model whose object groups score close to 1 wants its threshold.
THRESHOLDS = [round(0.05 * i, 2) for i in range(1, 20)] + [0.96, 0.97, 0.98, 0.99]


def text_embeddings(model, tok, labels, template):
    ids = torch.tensor([e.ids for e in tok.encode_batch([template.format(l) for l in labels])])
    t = model.text_projection(model.text_model(input_ids=ids).pooler_output)
    return t / t.norm(dim=-1, keepdim=True)


def pixel_values(images):
    """(N, H, W, 3) uint8 pictures as the model's normalised input (N, 3, H, W)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().permute(0, 3, 1, 2) / 255
    return (x - MEAN[:, None, None]) / STD[:, None, None]


def scores(model, tok, sc, template, side):
    """Per-label pixel scores (C, side, side) without background for the scene resized to `side`
    (bilinearly, on 8-bit pixels, as groupseg and mmseg resize), and the best group–label affinity
    (the official cap on the background threshold). The scenes are square, so one window covers them."""
    image = sc.image
    if side != image.shape[0]:
        from PIL import Image
        image = np.asarray(Image.fromarray(image).resize((side, side), Image.BILINEAR))
    x = pixel_values(image[None])
    text = text_embeddings(model, tok, sc.labels, template)
    logits, affinity = official_encode_decode(model, x, text, False, 0.0, with_affinity=True)
    return logits, affinity.max().item()


def labels_at(scored, threshold, size):
    """The official decision: background (a score of 1) where the best label's score is under the
    threshold, capped by the best affinity (`min(bg_thresh, affinity.max())`); the scores resized
    bilinearly to the scene's `size` and the best class taken per pixel (0 = background)."""
    logits, cap = scored
    below = logits.max(0).values < min(threshold, cap)
    full = torch.cat([below[None].float(), logits])
    if full.shape[-1] != size:
        full = torch.nn.functional.interpolate(full[None], size=(size, size), mode="bilinear", align_corners=False)[0]
    return full.argmax(0)


def figures(preds, evals):
    inter = np.zeros(len(CLASSES))
    union = np.zeros(len(CLASSES))
    correct = total = 0
    for pred, sc in zip(preds, evals):
        ids = np.array([0] + [CLASSES.index(l) for l in sc.labels])[pred]
        for c in np.union1d(np.unique(ids), np.unique(sc.mask)):
            a, b = ids == c, sc.mask == c
            inter[c] += (a & b).sum()
            union[c] += (a | b).sum()
        correct += (ids == sc.mask).sum()
        total += ids.size
    present = union > 0
    return {"miou": float((inter[present] / union[present]).mean()), "pixel_accuracy": float(correct / total),
            "classes": int(present.sum()), "background_iou": float(inter[0] / max(union[0], 1))}


def evaluate(model, tok, evals, template, threshold=None, side=None):
    """Figures at the given threshold, or at the best of THRESHOLDS (reported as `threshold`), with
    the scenes segmented at `side` pixels (their own size by default). The model must take other
    input sizes (`nvlabs.interpolating`)."""
    size = evals[0].image.shape[0]
    side = side or size
    with torch.no_grad():
        logits = [scores(model, tok, sc, template, side) for sc in evals]
    candidates = [threshold] if threshold is not None else THRESHOLDS
    best = None
    for t in candidates:
        f = figures([labels_at(l, t, size).numpy() for l in logits], evals)
        f["threshold"] = t
        f["side"] = side
        if best is None or f["miou"] > best["miou"]:
            best = f
    return best


def main():
    from tokenizers import Tokenizer
    from transformers import GroupViTModel
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threshold", type=float)
    ap.add_argument("--side", type=int, help="segment the scenes resized to this many pixels a side")
    ap.add_argument("--template", default="a photo of a {}.")
    ap.add_argument("--write-scenes")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = GroupViTModel.from_pretrained(args.model, dtype=torch.float32).eval()
    interpolating(model)
    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    evals = load_scenes(range(args.first, args.first + args.count), args.size)
    f = evaluate(model, tok, evals, args.template, args.threshold, args.side)
    f.update({"scenes": args.count, "first_seed": args.first, "size": args.size})
    print(json.dumps(f, indent=1))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(f, fh, indent=1)
    if args.write_scenes:
        write_scenes(evals, args.write_scenes)


if __name__ == "__main__":
    main()
