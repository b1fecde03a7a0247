#!/usr/bin/env python3
"""Trains the shapes demo GroupViT from text supervision only, as the paper does, on generated scenes.

The model is transformers' `GroupViTModel` (so the checkpoint is a standard one); its tokenizer is a
small byte-level BPE trained here on the scenes' captions with `tokenizers`' trainer.

Losses (Xu et al. 2022, §3.3): image–caption contrastive loss, plus the multi-label contrastive loss
between the image and prompts made from the caption's noun phrases ("a photo of a red circle.").
Our captions are generated, so we know exactly which images of a batch share a phrase: those are all
positives (soft targets) instead of false negatives. Training runs with the model's Gumbel hard
assignment (transformers' `GroupViTAssignAttention` in train mode).

Usage: train.py OUT [--minutes 60] [--seed 0] [--threads 2] [--batch 96] [--lr 1e-3]
Writes OUT/model (float32 checkpoint + config, tokenizer, preprocessor config), OUT/log.jsonl (one
line per logged step) and OUT/curves.png. `export.py` turns OUT/model into the shipped f16 model.
"""
import argparse
import concurrent.futures
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import GroupViTConfig, GroupViTModel

sys.path.insert(0, os.path.dirname(__file__))
import scenes  # noqa: E402
from evaluate import evaluate, interpolating, load_scenes, pixel_values, MEAN, STD  # noqa: E402

SIZE = 64  # training resolution; the pipeline segments at 2× (short side, window), stride 1×
CONTEXT = 32
TEMPLATE = "a photo of a {}."
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
TRAIN_SEED_BASE = 10_000_000  # evaluation scenes use seeds below 1,000,000; training ones never do
VAL_SEEDS = range(500_000, 500_064)


def train_tokenizer(seed):
    """A byte-level BPE in CLIP's arrangement (lower case, words end in </w>, start/end tokens),
    learnt from generated captions and the prompts made from every phrase."""
    rng = random.Random(seed)
    corpus = [scenes.scene(16, rng.randrange(TRAIN_SEED_BASE, 2 * TRAIN_SEED_BASE)).caption for _ in range(3000)]
    corpus += [TEMPLATE.format(p) for p in scenes.all_phrases()]
    corpus += [TEMPLATE.format(f"{b} background") for b in scenes.BACKGROUNDS]
    tok = Tokenizer(models.BPE(unk_token=None, end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(pattern=Regex(r"[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"),
                             behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=[BOS, EOS], end_of_word_suffix="</w>",
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    bos, eos = tok.token_to_id(BOS), tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A {EOS}", special_tokens=[(BOS, bos), (EOS, eos)])
    tok.enable_truncation(CONTEXT)
    tok.enable_padding(pad_id=eos, pad_token=EOS, length=CONTEXT)
    return tok


def make_config(tok):
    eos = tok.token_to_id(EOS)
    return GroupViTConfig(
        text_config=dict(vocab_size=tok.get_vocab_size(), hidden_size=128, intermediate_size=512,
                         num_hidden_layers=3, num_attention_heads=4, max_position_embeddings=CONTEXT,
                         bos_token_id=tok.token_to_id(BOS), eos_token_id=eos, pad_token_id=eos),
        vision_config=dict(image_size=SIZE, patch_size=4, hidden_size=128, intermediate_size=512,
                           depths=[3, 2, 1], num_hidden_layers=6, num_attention_heads=4,
                           num_group_tokens=[32, 8, 0], num_output_groups=[32, 8, 8]),
        projection_dim=128, projection_intermediate_dim=512,
    )


def init_like_nvlabs(model, seed):
    """transformers leaves group tokens and the vision position embeddings at zero (every group token
    alike); NVlabs draws them from a truncated normal with std 0.02."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("group_token") or name.endswith("vision_model.embeddings.position_embeddings"):
                p.copy_((torch.randn(p.shape, generator=g) * 0.02).clamp(-0.04, 0.04))


def batch_of(seeds, tok):
    """Pixels, caption ids, and each image's set of phrases (objects and the background)."""
    batch = [scenes.scene(SIZE, s) for s in seeds]
    x = pixel_values(np.stack([b.image for b in batch]))
    ids = torch.tensor([e.ids for e in tok.encode_batch([b.caption for b in batch])])
    phrases = [set(b.phrases()) | {f"{b.background} background"} for b in batch]
    return x, ids, phrases


def encode_text(model, ids):
    out = model.text_model(input_ids=ids)
    return F.normalize(model.text_projection(out.pooler_output), dim=-1)


def losses(model, x, ids, phrases, tok):
    vision = model.vision_model(pixel_values=x)
    img = F.normalize(model.visual_projection(vision.pooler_output), dim=-1)
    txt = encode_text(model, ids)
    scale = model.logit_scale.exp().clamp(max=100)
    n = x.shape[0]
    target = torch.arange(n)
    logits = img @ txt.t() * scale
    itc = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2

    # Multi-label: every distinct phrase of the batch, once.
    vocab = sorted(set().union(*phrases))
    prompts = torch.tensor([e.ids for e in tok.encode_batch([TEMPLATE.format(p) for p in vocab])])
    ptxt = encode_text(model, prompts)
    pos = torch.tensor([[p in ph for p in vocab] for ph in phrases], dtype=torch.float32)  # [N, P]
    plog = img @ ptxt.t() * scale
    per_image = -(F.log_softmax(plog, dim=1) * pos / pos.sum(1, keepdim=True)).sum(1).mean()
    per_phrase = -(F.log_softmax(plog.t(), dim=1) * pos.t() / pos.t().sum(1, keepdim=True)).sum(1).mean()
    return itc, (per_image + per_phrase) / 2


def plot(log, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    steps = [r["step"] for r in log if "itc" in r]
    a.plot(steps, [r["itc"] for r in log if "itc" in r], label="image–caption contrastive")
    a.plot(steps, [r["multi_label"] for r in log if "itc" in r], label="multi-label contrastive")
    a.set_xlabel("step"); a.set_ylabel("loss"); a.legend(); a.grid(alpha=0.3)
    ev = [r for r in log if f"miou_{SIZE}" in r]
    for size in (SIZE, 2 * SIZE):
        b.plot([r["step"] for r in ev], [r[f"miou_{size}"] for r in ev], "o-", label=f"mIoU, {size}×{size} scenes")
        b.plot([r["step"] for r in ev], [r[f"pixel_accuracy_{size}"] for r in ev], "s--", label=f"pixel accuracy, {size}×{size}")
    b.set_title(f"{len(VAL_SEEDS)} validation scenes, best background threshold")
    b.set_xlabel("step"); b.set_ylim(0, 1); b.legend(); b.grid(alpha=0.3)
    fig.suptitle("GroupViT on generated shapes, text supervision only")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def save(model, tok, out):
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "preprocessor_config.json"), "w") as f:
        json.dump({"image_processor_type": "CLIPImageProcessor", "do_resize": True,
                   "size": {"shortest_edge": SIZE}, "resample": 3, "do_center_crop": True,
                   "crop_size": {"height": SIZE, "width": SIZE}, "do_rescale": True,
                   "rescale_factor": 1 / 255, "do_normalize": True,
                   "image_mean": MEAN.tolist(), "image_std": STD.tolist(), "do_convert_rgb": True}, f, indent=2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=96)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval-every", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)

    tok = train_tokenizer(args.seed)
    model = GroupViTModel(make_config(tok))
    init_like_nvlabs(model, args.seed)
    interpolating(model)  # validation also runs at twice the training size (identity at 1×)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{n_params:,} parameters, vocabulary {tok.get_vocab_size()}", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "group_token" not in n and "position" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "group_token" not in n and "position" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98))
    # Validation at the training size and at 2× (the official recipe segments at twice the training size).
    val = {size: load_scenes(VAL_SEEDS, size) for size in (SIZE, 2 * SIZE)}
    out_model = os.path.join(args.out, "model")
    log, log_path = [], os.path.join(args.out, "log.jsonl")
    os.makedirs(args.out, exist_ok=True)
    open(log_path, "w").close()

    # Step budget from the wall-clock budget: time a few steps first, then fix the cosine schedule.
    rng = random.Random(args.seed)
    budget = args.minutes * 60
    start, total, step, warmup = time.time(), None, 0, 100
    # Scenes for the next step are drawn while this one trains.
    prefetch = concurrent.futures.ThreadPoolExecutor(1)
    pending = prefetch.submit(batch_of, [rng.randrange(TRAIN_SEED_BASE, 2 ** 62) for _ in range(args.batch)], tok)
    while total is None or step < total:
        lr = args.lr * min(1.0, (step + 1) / warmup)
        if total is not None:
            lr *= 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        for g in opt.param_groups:
            g["lr"] = lr
        model.train()
        x, ids, phrases = pending.result()
        pending = prefetch.submit(batch_of, [rng.randrange(TRAIN_SEED_BASE, 2 ** 62) for _ in range(args.batch)], tok)
        itc, ml = losses(model, x, ids, phrases, tok)
        loss = itc + ml
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        if step == 10 and total is None:
            per_step = (time.time() - start) / step
            total = max(warmup * 2, int(budget * 0.93 / per_step))  # leave time for evaluations
            print(f"{per_step:.2f} s/step → {total} steps", flush=True)
        if step % 20 == 0:
            rec = {"step": step, "itc": itc.item(), "multi_label": ml.item(), "lr": lr,
                   "logit_scale": model.logit_scale.exp().item(), "minutes": (time.time() - start) / 60}
            log.append(rec)
            with open(log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            print(json.dumps(rec), flush=True)
        if step % args.eval_every == 0 or step == total:
            model.eval()
            with torch.no_grad():
                rec = {"step": step}
                for size, evals in val.items():
                    m = evaluate(model, tok, evals, TEMPLATE)
                    rec.update({f"miou_{size}": m["miou"], f"pixel_accuracy_{size}": m["pixel_accuracy"],
                                f"threshold_{size}": m["threshold"]})
            log.append(rec)
            with open(log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            print(json.dumps(rec), flush=True)
            save(model, tok, out_model)
            plot(log, os.path.join(args.out, "curves.png"))
    print(f"done: {step} steps in {(time.time() - start) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
