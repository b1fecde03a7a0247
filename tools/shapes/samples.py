#!/usr/bin/env python3
"""Writes the page's sample scenes: held-out test scenes (never seen in training), enlarged 4× with
nearest-neighbour so that they display crisply, and the labels that name their shapes.

Usage: samples.py OUT_DIR   (the page's www/samples/)
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import scenes  # noqa: E402

SEEDS = [40, 14, 23]


def main():
    from PIL import Image
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    labels, files = [], []
    for seed in SEEDS:
        s = scenes.scene(64, seed)
        name = f"scene-{seed}.png"
        Image.fromarray(s.image).resize((256, 256), Image.NEAREST).save(os.path.join(out, name))
        files.append(name)
        labels += [p for p in s.phrases() if p not in labels]
    with open(os.path.join(out, "samples.json"), "w") as f:
        json.dump({"files": files, "labels": labels}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
