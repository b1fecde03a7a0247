#!/usr/bin/env python3
"""Benchmark peer and full-size parity reference (developer tool; CI never needs it).

Makes a random GroupViT with the published `nvidia/groupvit-gcc-yfcc` shapes (transformers'
defaults) in OUT/model (not committed; the tokenizer is built from ../shared's CLIP vocabulary at run
time), then, with transformers on this CPU:
- times the image forward at 224 and at one 448 window, and the text encoder for 1 and 20 prompts,
  writing medians to OUT/reference.json;
- writes OUT/photo.png (640×480) and transformers' segmentation_logits for it, resized to the
  segmentation size (448×597), to OUT/reference_logits.npy.
With --times, onnxruntime (pip) is timed too on OUT/onnx/vision_*.onnx when tools/bench/onnx_export.py
has written them (onnxruntime_image_224, onnxruntime_image_448).
Usage: reference.py OUT THREADS          (makes the model, then times)
       reference.py OUT THREADS --times   (times the model already in OUT; JSON on stdout)
"""
import json
import os
import statistics
import sys
import time
import gzip

import numpy as np
import torch
import transformers
from safetensors.torch import save_file
from transformers import CLIPTokenizer, GroupViTConfig, GroupViTModel

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures"))
from make_fixtures import SHARED, clip_vocab, photo, rerandomise  # noqa: E402
from nvlabs import IMAGENET_MEAN, IMAGENET_STD, interpolating, normalise  # noqa: E402

LABELS = ["cat", "dog", "grass", "sky", "tree", "road", "car", "person", "building", "water",
          "sofa", "window", "floor", "table", "chair", "bottle", "bird", "horse", "boat", "train"]


def median_ms(fn, warmup, runs):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def time_model(model, tok):
    """Medians in ms of the image forward (224, one 448 window) and text encoder (1, 20 prompts)."""
    def image(x):
        v = model.vision_model(pixel_values=x, output_attentions=True, return_dict=True)
        model.visual_projection(v.pooler_output)
        model.visual_projection(v.last_hidden_state.reshape(-1, v.last_hidden_state.shape[-1]))

    def text(n):
        ids = tok([f"a photo of a {l}." for l in (LABELS * 2)[:n]], padding="max_length", max_length=77,
                  return_tensors="pt").input_ids
        return lambda: model.get_text_features(input_ids=ids)

    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        x224, x448 = torch.randn(1, 3, 224, 224, generator=g), torch.randn(1, 3, 448, 448, generator=g)
        return {
            "image_224": median_ms(lambda: image(x224), 2, 10),
            "image_448": median_ms(lambda: image(x448), 1, 5),
            "text_1": median_ms(text(1), 2, 10),
            "text_20": median_ms(text(20), 1, 5),
        }


def time_onnxruntime(out, threads):
    """onnxruntime's medians on the exported image encoder and its q8 copy, where they were exported."""
    import onnxruntime as ort
    times = {}
    for q8 in ("", "_q8"):
        for side in (224, 448):
            path = os.path.join(out, "onnx", f"vision_{side}{q8}.onnx")
            if not os.path.exists(path):
                continue
            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
            session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
            feed = {"pixel_values": np.random.default_rng(side).standard_normal((1, 3, side, side), dtype=np.float32)}
            times[f"onnxruntime{q8}_image_{side}"] = median_ms(lambda: session.run(None, feed), 2, 10 if side == 224 else 5)
    return times


def main():
    out, threads = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(threads)
    model_dir = os.path.join(out, "model")
    if "--times" in sys.argv:
        model = GroupViTModel.from_pretrained(model_dir).eval()
        interpolating(model)
        times = time_model(model, CLIPTokenizer.from_pretrained(model_dir))
        times.update(time_onnxruntime(out, threads))
        print(json.dumps(times))
        return
    os.makedirs(model_dir, exist_ok=True)
    cfg = GroupViTConfig()
    model = GroupViTModel(cfg).eval()
    rerandomise(model, 7)
    cfg.save_pretrained(model_dir)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if "position_ids" not in k}
    save_file(state, os.path.join(model_dir, "model.safetensors"), metadata={"format": "pt"})
    with gzip.open(SHARED, "rt", encoding="utf-8") as f:
        merges = [tuple(l.split()) for l in f.read().split("\n")[1: 49152 - 256 - 2 + 1]]
    tok = CLIPTokenizer(vocab=clip_vocab(merges), merges=merges)
    tok.save_pretrained(model_dir)
    with open(os.path.join(model_dir, "preprocessor_config.json"), "w") as f:
        json.dump({"image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD, "size": {"shortest_edge": 224},
                   "crop_size": {"height": 224, "width": 224}}, f)
    interpolating(model)
    n_params = sum(p.numel() for p in model.parameters())

    with torch.no_grad():
        img = photo(640, 480, 11)
        img.save(os.path.join(out, "photo.png"))
        # The segmentation size as groupseg computes it (bilinear, short side 448): use the Rust
        # side's own resize by giving it the photo already at that size.
        img = img.resize((597, 448), resample=2)
        img.save(os.path.join(out, "photo448.png"))
        labels = LABELS[:10]
        enc = tok([f"a photo of a {l}." for l in labels], padding="max_length", max_length=77, return_tensors="pt")
        seg = model(input_ids=enc.input_ids, pixel_values=normalise(img), output_segmentation=True).segmentation_logits[0]
        np.save(os.path.join(out, "reference_logits.npy"), seg.numpy())
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump({"threads": threads, "torch": torch.__version__, "transformers": transformers.__version__,
                   "parameters": n_params, "labels": labels}, f, indent=2)
    print(f"reference: random GroupViT with {n_params} parameters in {model_dir}")


if __name__ == "__main__":
    main()
