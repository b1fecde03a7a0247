"""NVlabs' GroupViT inference (`GroupViTSegInference.encode_decode` with mmseg's `slide_inference`)
ported onto transformers' modules: the reference every segmentation figure of groupseg is checked
against (the fixtures, the shapes demo's evaluation and its training's validation).

transformers' GroupViTModel.forward never passes `interpolate_pos_encoding`, so inputs other than the
training size raise; `interpolating` makes the vision embeddings always interpolate (bicubic,
align_corners=False; the identity at the training size).
"""
import functools

import numpy as np
import torch

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def interpolating(model):
    """Makes `model`'s vision embeddings interpolate their position embeddings for any input size."""
    emb = model.vision_model.embeddings
    emb.forward = functools.partial(emb.forward.__func__, emb, interpolate_pos_encoding=True)


def normalise(img):
    x = torch.tensor(np.asarray(img), dtype=torch.float32).permute(2, 0, 1) / 255.0
    return ((x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None])[None]


def official_encode_decode(model, crop, text, with_bg, bg_thresh, top_k=5, with_affinity=False):
    """NVlabs GroupViTSegInference.encode_decode on transformers' modules (batch 1); with
    `with_affinity`, also the group–label affinity whose maximum caps the background threshold."""
    out = model.vision_model(pixel_values=crop, output_attentions=True, return_dict=True)
    h, w = crop.shape[-2:]
    prev = None
    for a in out.attentions:
        a = a.permute(0, 2, 1)
        prev = a if prev is None else prev @ a
    gh, gw = h // model.config.vision_config.patch_size, w // model.config.vision_config.patch_size
    maps = prev.permute(0, 2, 1).reshape(1, -1, gh, gw)
    maps = torch.nn.functional.interpolate(maps, size=(h, w), mode="bilinear", align_corners=False)[0]  # [G, H, W]
    onehot = torch.nn.functional.one_hot(maps.argmax(0), num_classes=maps.shape[0]).float()  # [H, W, G]
    groups = model.visual_projection(out.last_hidden_state[0])
    groups = groups / groups.norm(dim=-1, keepdim=True)
    avg = model.visual_projection(out.pooler_output)
    avg = avg / avg.norm(dim=-1, keepdim=True)
    scale = torch.clamp(model.logit_scale.exp(), max=100)
    affinity = groups @ text.T * scale
    pre = affinity.softmax(-1)
    whole = (avg @ text.T * scale).softmax(-1)
    mask = torch.zeros_like(whole)
    top = whole.topk(dim=-1, k=min(top_k, text.shape[0]))
    mask.scatter_add_(-1, top.indices, torch.ones_like(top.values))
    affinity = affinity.masked_fill(~mask.bool(), float("-inf")).softmax(-1) * pre
    offset = 1 if with_bg else 0
    logits = torch.zeros(text.shape[0] + offset, h, w)
    pix = onehot @ affinity
    logits[offset:] = pix.permute(2, 0, 1)
    if with_bg:
        t = min(bg_thresh, affinity.max().item())
        logits[0, pix.max(-1).values < t] = 1
    return (logits, affinity) if with_affinity else logits


def official_slide(model, img, text, window, stride, bg_thresh):
    """mmseg slide_inference over official_encode_decode; labels per pixel (0 = background).
    `bg_thresh=None` runs without background (the official `with_bg=False`), and class 0 stays 0."""
    _, _, H, W = img.shape
    ch, cw = min(window, H), min(window, W)
    hg = max(H - ch + stride - 1, 0) // stride + 1
    wg = max(W - cw + stride - 1, 0) // stride + 1
    preds = torch.zeros(text.shape[0] + 1, H, W)
    count = torch.zeros(1, H, W)
    for i in range(hg):
        for j in range(wg):
            y2, x2 = min(i * stride + ch, H), min(j * stride + cw, W)
            y1, x1 = max(y2 - ch, 0), max(x2 - cw, 0)
            crop = img[:, :, y1:y2, x1:x2]
            if bg_thresh is None:
                preds[1:, y1:y2, x1:x2] += official_encode_decode(model, crop, text, False, 0.0)
            else:
                preds[:, y1:y2, x1:x2] += official_encode_decode(model, crop, text, True, bg_thresh)
            count[:, y1:y2, x1:x2] += 1
    preds = preds / count
    return preds.argmax(0).to(torch.int32), preds
