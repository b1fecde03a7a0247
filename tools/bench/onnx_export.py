#!/usr/bin/env python3
"""Exports the benchmark's full-size random GroupViT (OUT/model, made by tools/reference/reference.py)
to ONNX for onnxruntime, in the browser and natively: the image encoder's work as groupseg's `encode`
does it (vision transformer with its grouping blocks, the assignments, the projection of the final
groups), one graph per input size: OUT/onnx/vision_224.onnx and vision_448.onnx, each checked
against transformers through onnxruntime (pip), and their dynamically quantized copies
vision_224_q8.onnx and vision_448_q8.onnx, made as transformers.js makes the `q8` models it loads by
default on WebAssembly (its scripts/quantize.py: onnxruntime's integer-ops quantizer, uint8 weights
since the graph has a Conv, per tensor, full range, uint8 activations quantized per call).
reference.py --times times them.
Usage: onnx_export.py OUT"""
import os
import sys
import warnings

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from transformers import GroupViTModel

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "reference"))
from nvlabs import interpolating  # noqa: E402


class ImageEncoder(torch.nn.Module):
    """pixel values → (projected final groups, every grouping block's assignment)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        v = self.model.vision_model(pixel_values=pixel_values, output_attentions=True, return_dict=True)
        groups = self.model.visual_projection(v.last_hidden_state.reshape(-1, v.last_hidden_state.shape[-1]))
        return (groups, *v.attentions)


def main():
    # The tracer's notes on transformers' shape checks, and the legacy exporter's deprecation: the
    # graph is checked against transformers below instead.
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    out = sys.argv[1]
    model = GroupViTModel.from_pretrained(os.path.join(out, "model")).eval()
    interpolating(model)
    encoder = ImageEncoder(model).eval()
    os.makedirs(os.path.join(out, "onnx"), exist_ok=True)
    for side in (224, 448):
        path = os.path.join(out, "onnx", f"vision_{side}.onnx")
        x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(side))
        if not os.path.exists(path):
            with torch.no_grad():
                torch.onnx.export(encoder, (x,), path, input_names=["pixel_values"], dynamo=False,
                                  opset_version=17, do_constant_folding=True)
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        with torch.no_grad():
            want = encoder(x)[0].numpy()
        got = session.run(None, {"pixel_values": x.numpy()})[0]
        err = float(np.abs(got - want).max())
        if not err <= 1e-3:  # NaN fails too
            sys.exit(f"vision_{side}.onnx differs from transformers by {err}")
        print(f"{path}: onnxruntime {ort.__version__} agrees with transformers (max |diff| {err:.1e})")
        q8 = os.path.join(out, "onnx", f"vision_{side}_q8.onnx")
        if not os.path.exists(q8):
            quantize_dynamic(path, q8, weight_type=QuantType.QUInt8, per_channel=False, reduce_range=False,
                             extra_options={"EnableSubgraph": True, "MatMulConstBOnly": True})
        got = ort.InferenceSession(q8, providers=["CPUExecutionProvider"]).run(None, {"pixel_values": x.numpy()})[0]
        cos = float((got * want).sum() / np.linalg.norm(got) / np.linalg.norm(want))
        print(f"{q8}: the q8 copy's groups against transformers' f32: cosine {cos:.4f}")


if __name__ == "__main__":
    main()
