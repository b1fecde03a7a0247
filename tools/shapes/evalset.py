"""The scenes an evaluation segments, as the Rust tests read them: each scene's picture, the labels it
is segmented with (its phrases, then two distractors) and its mask in global class ids (0 =
background, then every colour–shape phrase). Needs only numpy and Pillow.

Usage: evalset.py OUT_DIR --first SEED [--count 200 --size 64]
  Test scenes are seeds 0–199 (tests/fixtures/shapes-eval, written by evaluate.py); validation
  scenes, on which every setting is chosen, are seeds 500000 on (tests/fixtures/shapes-val).
"""
import argparse
import json
import os
import random
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import scenes  # noqa: E402

CLASSES = ["background"] + scenes.all_phrases()


class EvalScene:
    """A scene, the labels it is segmented with (its phrases, then two distractors) and its mask in
    global class ids."""

    def __init__(self, seed, size):
        s = scenes.scene(size, seed)
        self.seed, self.image = seed, s.image
        self.labels = s.phrases() + scenes.distractors(s, random.Random(seed ^ 0x5EED))
        ids = np.array([0] + [CLASSES.index(p) for p in s.phrases()])
        self.mask = ids[s.mask]


def load_scenes(seeds, size):
    return [EvalScene(s, size) for s in seeds]


def write_scenes(evals, out_dir):
    from PIL import Image
    os.makedirs(out_dir, exist_ok=True)
    meta = []
    for i, sc in enumerate(evals):
        Image.fromarray(sc.image).save(os.path.join(out_dir, f"{i:03}.png"))
        Image.fromarray(sc.mask.astype(np.uint8)).save(os.path.join(out_dir, f"{i:03}-mask.png"))
        meta.append({"seed": sc.seed, "labels": sc.labels})
    with open(os.path.join(out_dir, "labels.json"), "w") as f:
        json.dump({"classes": CLASSES, "scenes": meta}, f, indent=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--first", type=int, required=True)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--size", type=int, default=64)
    a = ap.parse_args()
    write_scenes(load_scenes(range(a.first, a.first + a.count), a.size), a.out)


if __name__ == "__main__":
    main()
