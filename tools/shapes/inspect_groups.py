#!/usr/bin/env python3
"""Looks inside a shapes model: for some validation scenes, a row of the picture, the true mask,
the final groups (each pixel's argmax group, NVlabs' `final_group` view) and the segmentation at
the given threshold, with each group's best phrase printed.

Usage: inspect_groups.py MODEL_DIR OUT.png [--count 8] [--threshold T] [--first 500000]
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from evaluate import CLASSES, interpolating, labels_at, load_scenes, pixel_values, scores, text_embeddings  # noqa: E402

PALETTE = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
                    [0, 128, 128], [220, 190, 255], [170, 110, 40], [255, 250, 200], [128, 0, 0]], np.uint8)


def group_map(model, image):
    out = model.vision_model(pixel_values=pixel_values(image[None]), output_attentions=True, return_dict=True)
    chain = None
    for a in out.attentions:
        chain = a if chain is None else a @ chain
    patch = model.config.vision_config.patch_size
    h, w = image.shape[:2]
    maps = chain.reshape(1, -1, h // patch, w // patch)
    maps = torch.nn.functional.interpolate(maps, size=(h, w), mode="bilinear", align_corners=False)[0]
    groups = model.visual_projection(out.last_hidden_state[0])
    return maps.argmax(0).numpy(), groups / groups.norm(dim=-1, keepdim=True)


def main():
    from PIL import Image
    from tokenizers import Tokenizer
    from transformers import GroupViTModel
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--first", type=int, default=500_000)
    ap.add_argument("--threshold", type=float, default=0.5)
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = GroupViTModel.from_pretrained(args.model, dtype=torch.float32).eval()
    interpolating(model)
    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    vocab = CLASSES[1:] + ["grey background", "black background", "white background", "gradient background",
                           "striped background", "checkered background", "noisy background"]
    rows = []
    with torch.no_grad():
        everything = text_embeddings(model, tok, vocab, "a photo of a {}.")
        for sc in load_scenes(range(args.first, args.first + args.count), 64):
            gmap, groups = group_map(model, sc.image)
            sim = groups @ everything.T
            used = np.unique(gmap)
            print(f"scene {sc.seed}: labels {sc.labels}")
            for g in used:
                best = sim[g].topk(2)
                print(f"  group {g}: {np.mean(gmap == g):.0%} of pixels, best {vocab[best.indices[0]]} "
                      f"({best.values[0]:.2f}), then {vocab[best.indices[1]]} ({best.values[1]:.2f})")
            pred = labels_at(scores(model, tok, sc, "a photo of a {}.", 64), args.threshold, 64).numpy()
            ids = np.array([0] + [CLASSES.index(l) for l in sc.labels])[pred]
            truth_colours = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(np.unique(np.concatenate([sc.mask.ravel(), ids.ravel()])))}
            paint = lambda m: np.stack([truth_colours.get(v, PALETTE[0]) for v in m.ravel()]).reshape(*m.shape, 3)
            row = [sc.image, paint(sc.mask), PALETTE[(gmap + 1) % len(PALETTE)], paint(ids)]
            rows.append(np.concatenate([np.pad(r, ((2, 2), (2, 2), (0, 0)), constant_values=255) for r in row], 1))
    grid = np.concatenate(rows, 0)
    Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.NEAREST).save(args.out)
    print(f"{args.out}: picture | truth | groups | prediction at threshold {args.threshold}")


if __name__ == "__main__":
    main()
