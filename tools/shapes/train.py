#!/usr/bin/env python3
"""Trains the shapes demo GroupViT from text supervision only, on generated scenes.

The model is transformers' `GroupViTModel` (a standard checkpoint); its tokenizer is a small
byte-level BPE learnt here from the scenes' captions with `tokenizers`' trainer. Training sees
pictures, captions and the phrases taken from captions ("red circle", "grey background"); never a
mask or a box.

Losses, each weighted by a flag (0 turns it off):
- `--itc`: image–caption contrastive (Xu et al. 2022, §3.3).
- `--image-ml`: multi-label contrastive between the image (mean of its groups) and prompts of the
  caption's phrases ("a photo of a red circle."); every image of the batch that has a phrase is a
  positive for it.
- `--group-ml`: the same, scoring each phrase by the image's best *non-empty* group instead of the
  average: every phrase must be matched by some group that holds pixels.
- `--tokens-ml`: deep supervision: the same multi-label loss on the mean of the image tokens that
  enter the first grouping block (through the final LayerNorm and the visual projection). The
  grouping block passes little of the image to the groups early in training, so the backbone
  learns shape slowly through it alone; this gives it a direct path. Inference never uses it.
  (Off by default: not tried in a full run yet.)
- `--commit`: every group that holds pixels must match one of its image's phrases on its own
  (−log of the largest probability, over the image's phrases, of a softmax over all phrases),
  weighted by its share of the image. A group that straddles two objects is a blend of two phrases
  and pays for it. (Off by default: it lowered validation mIoU in every run that had it.)
The assignment is soft (softmax over groups) for the first `--soft-steps` steps, then transformers'
Gumbel hard assignment as in the paper. BatchNorm in the projection heads keeps its initial
statistics (an affine map), so training and inference see the same function.

Usage: train.py OUT --pool full.npz [--easy-pool easy.npz --easy-steps K] [--steps N] [--seed 0]
                    [--resume]   (continues OUT/checkpoint.pt)
       train.py OUT --pool full.npz --init STAGE/model --side 128 [--background-flat 1]  (a later stage)
Writes OUT/model (float32 checkpoint + config, tokenizer, preprocessor config), OUT/log.jsonl and
OUT/curves.png. `export.py` turns OUT/model into the shipped f16 model.
"""
import argparse
import json
import math
import os
import random
import re
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import GroupViTConfig, GroupViTModel
from transformers.models.groupvit import modeling_groupvit as hf

sys.path.insert(0, os.path.dirname(__file__))
import pool as pools  # noqa: E402
import scenes  # noqa: E402
from evaluate import evaluate, interpolating, load_scenes, pixel_values, MEAN, STD  # noqa: E402

CONTEXT = 32
TEMPLATE = "a photo of a {}."
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
TRAIN_SEED_BASE = 10_000_000  # evaluation scenes use seeds below 1,000,000; training ones never do
VAL_SEEDS = range(500_000, 500_064)
# Every phrase a caption can hold: the 49 objects, the 7 shapes named without a colour, then the
# backgrounds.
BACKGROUND_PHRASES = [f"{b} background" for b in scenes.BACKGROUNDS]
PHRASES = scenes.all_phrases() + list(scenes.SHAPES) + BACKGROUND_PHRASES
BACKGROUND_IDS = torch.arange(len(PHRASES) - len(BACKGROUND_PHRASES), len(PHRASES))
OBJECT_IDS = torch.arange(len(PHRASES) - len(BACKGROUND_PHRASES))
COLOUR_WORDS = re.compile(r"\ban? (?:" + "|".join(scenes.COLOURS) + r") ")


def without_colours(caption):
    """The caption as a person who names only the shapes would write it ("a circle next to a star
    on a grey background"); every shape name starts with a consonant, so the article is "a"."""
    return COLOUR_WORDS.sub("a ", caption)


def train_tokenizer(seed):
    """A byte-level BPE in CLIP's arrangement (lower case, words end in </w>, start/end tokens),
    learnt from generated captions and the prompts made from every phrase."""
    rng = random.Random(seed)
    corpus = [scenes.scene(16, rng.randrange(TRAIN_SEED_BASE, 2 * TRAIN_SEED_BASE)).caption for _ in range(3000)]
    corpus += [TEMPLATE.format(p) for p in PHRASES]
    corpus += [without_colours(c) for c in corpus[:1000]]
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


def make_config(tok, args):
    """`--groups 8` is one grouping stage (8 groups) followed by a stage without; `--groups 32,8`
    two grouping stages, as the paper's 64,8."""
    groups = [int(g) for g in args.groups.split(",")]
    depths = [int(d) for d in args.depths.split(",")]
    if len(depths) != len(groups) + 1:
        raise SystemExit(f"--depths needs {len(groups) + 1} entries for --groups {args.groups}")
    eos = tok.token_to_id(EOS)
    w = args.width
    return GroupViTConfig(
        text_config=dict(vocab_size=tok.get_vocab_size(), hidden_size=args.text_width,
                         intermediate_size=4 * args.text_width, num_hidden_layers=args.text_layers,
                         num_attention_heads=4, max_position_embeddings=CONTEXT,
                         bos_token_id=tok.token_to_id(BOS), eos_token_id=eos, pad_token_id=eos),
        vision_config=dict(image_size=args.size, patch_size=args.patch, hidden_size=w, intermediate_size=4 * w,
                           depths=depths, num_hidden_layers=sum(depths), num_attention_heads=4,
                           num_group_tokens=groups + [0], num_output_groups=groups + [groups[-1]]),
        projection_dim=128, projection_intermediate_dim=4 * 128,
    )


def init_like_nvlabs(model, seed):
    """transformers leaves group tokens and the vision position embeddings at zero (every group token
    alike); NVlabs draws them from a truncated normal with std 0.02."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("group_token") or name.endswith("vision_model.embeddings.position_embeddings"):
                p.copy_((torch.randn(p.shape, generator=g) * 0.02).clamp(-0.04, 0.04))


# The assignment: transformers' GroupViTAssignAttention, with the hard assignment it used kept for
# the losses, and a switch for soft assignment early in training.
ASSIGN = {"soft": False}


def _assign_forward(self, query, key):
    value = key
    query, key, value = self.q_proj(query), self.k_proj(key), self.v_proj(value)
    raw = (query @ key.transpose(-2, -1)) * self.scale
    attn = raw.softmax(dim=-2) if ASSIGN["soft"] and self.training else self.get_attn(raw)
    soft = self.get_attn(raw, gumbel=False, hard=False)
    self.used = attn
    attn = attn / (attn.sum(dim=-1, keepdim=True) + self.assign_eps)
    return self.proj(attn @ value), soft


hf.GroupViTAssignAttention.forward = _assign_forward


def group_shares(model):
    """Each final group's share of the image's tokens `(B, G)`, from the assignments just used
    (detached: it weighs losses, it is not trained through)."""
    chain = None
    for stage in model.vision_model.encoder.stages:
        if stage.downsample is not None:
            a = stage.downsample.assign.used.detach()  # (B, G, N)
            chain = a if chain is None else a @ chain
    return chain.sum(-1) / chain.shape[-1]


def freeze_batchnorm(model):
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.eval()


class Batches:
    """Training batches from the cached pools: pixels, caption ids and each image's phrase ids."""

    def __init__(self, tok, full, easy, easy_steps, batch, seed, shapes_only, side=None):
        self.tok, self.full, self.easy, self.easy_steps, self.batch = tok, full, easy, easy_steps, batch
        self.side = side
        self.shapes_only = shapes_only
        self.rng = np.random.default_rng(seed)
        self.index = {p: i for i, p in enumerate(PHRASES)}

    def __call__(self, step):
        easy_share = max(0.0, 1 - step / self.easy_steps) if self.easy is not None and self.easy_steps else 0.0
        n_easy = int(round(easy_share * self.batch))
        parts = []
        for pool, n in ((self.easy, n_easy), (self.full, self.batch - n_easy)):
            if n:
                parts.append((pool, self.rng.integers(0, len(pool["captions"]), n)))
        images = np.concatenate([p["images"][i] for p, i in parts])
        captions = [str(c) for p, i in parts for c in p["captions"][i]]
        phrases = [str(ph).split("|") for p, i in parts for ph in p["phrases"][i]]
        # Some captions name only the shapes: colour cannot answer them, so shape gets learnt.
        for r in np.flatnonzero(self.rng.random(len(captions)) < self.shapes_only):
            captions[r] = without_colours(captions[r])
            phrases[r] = [p.split()[1] for p in phrases[r]]
        backgrounds = [str(bg) for p, i in parts for bg in p["backgrounds"][i]]
        phrases = [ph + [f"{bg} background"] for ph, bg in zip(phrases, backgrounds)]
        pos = torch.zeros(len(captions), len(PHRASES))
        for r, ph in enumerate(phrases):
            pos[r, [self.index[p] for p in ph]] = 1
        x = pixel_values(images)
        if self.side and self.side != x.shape[-1]:
            # As the evaluation and the apps see a scene resized to the segmentation side.
            x = F.interpolate(x, size=(self.side, self.side), mode="bilinear", align_corners=False)
        return x, token_ids(self.tok, captions), pos


def token_ids(tok, texts):
    """Ids cut after the longest text's end token: the causal mask makes the padding after it
    irrelevant, so the result is the same as at the full context."""
    ids = torch.tensor([e.ids for e in tok.encode_batch(texts)])
    eos = tok.token_to_id(EOS)
    length = int((ids == eos).int().argmax(1).max()) + 1
    return ids[:, :length]


def encode_text(model, ids):
    out = model.text_model(input_ids=ids)
    return F.normalize(model.text_projection(out.pooler_output), dim=-1)


def multi_positive(logits, pos):
    """Multi-label contrastive loss in both directions: each row's softmax against the uniform
    distribution over its positives, and each column's over the images that have it."""
    rows = -(F.log_softmax(logits, 1) * pos / pos.sum(1, keepdim=True)).sum(1).mean()
    present = pos.sum(0) > 0
    lt, pt = logits.t()[present], pos.t()[present]
    cols = -(F.log_softmax(lt, 1) * pt / pt.sum(1, keepdim=True)).sum(1).mean()
    return (rows + cols) / 2


# The image tokens entering the first grouping block, kept by a hook for `--tokens-ml`.
TOKENS = {}


def _keep_tokens(module, args, kwargs):
    TOKENS["x"] = kwargs.get("image_tokens", args[0] if args else None)


def losses(model, x, ids, pos, prompts, w):
    vision = model.vision_model(pixel_values=x)
    shares = group_shares(model)  # (B, G)
    b, g, d = vision.last_hidden_state.shape
    groups = F.normalize(model.visual_projection(vision.last_hidden_state.reshape(b * g, d)), dim=-1).reshape(b, g, -1)
    image = F.normalize(model.visual_projection(vision.pooler_output), dim=-1)
    phrases = encode_text(model, prompts)  # (P, D)
    scale = model.logit_scale.exp().clamp(max=100)
    out = {}
    if w["itc"]:
        logits = image @ encode_text(model, ids).t() * scale
        target = torch.arange(b)
        out["itc"] = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
    if w["image_ml"]:
        out["image_ml"] = multi_positive(image @ phrases.t() * scale, pos)
    if w["tokens_ml"]:
        tokens = model.vision_model.layernorm(TOKENS["x"].mean(1))
        tokens = F.normalize(model.visual_projection(tokens), dim=-1)
        out["tokens_ml"] = multi_positive(tokens @ phrases.t() * scale, pos)
    group_logits = groups @ phrases.t() * scale  # (B, G, P)
    # A group holds pixels when it has at least half a patch's worth of them (soft assignment
    # spreads a little of every patch over every group).
    patch = model.config.vision_config.patch_size
    held = shares > 0.5 / ((x.shape[-2] // patch) * (x.shape[-1] // patch))
    if w["group_ml"]:
        best = group_logits.masked_fill(~held[..., None], -1e4).max(1).values  # (B, P)
        out["group_ml"] = multi_positive(best, pos)
    if w["background_flat"]:
        mine = group_logits.detach().masked_fill(pos[:, None, :] == 0, -1e4).argmax(-1)  # (B, G)
        is_background = held & torch.isin(mine, BACKGROUND_IDS)
        flat = -F.log_softmax(group_logits[..., OBJECT_IDS], -1).mean(-1)  # (B, G)
        out["background_flat"] = (flat * is_background).sum() / is_background.sum().clamp(min=1)
    if w["commit"]:
        logp = F.log_softmax(group_logits, -1).masked_fill(pos[:, None, :] == 0, -1e4).max(-1).values  # (B, G)
        weight = shares if w["commit_by_share"] else held.float() / held.float().sum(1, keepdim=True)
        out["commit"] = -(logp * weight).sum(1).mean()
    total = sum(w[k] * v for k, v in out.items())
    stats = {"groups_held": held.float().sum(1).mean().item(),
             "largest_group": shares.max(1).values.mean().item()}
    return total, out, stats


def plot(log, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    train = [r for r in log if "loss" in r]
    for k in ("itc", "image_ml", "group_ml", "tokens_ml", "commit", "background_flat"):
        pts = [(r["step"], r[k]) for r in train if k in r]
        if pts:
            a.plot(*zip(*pts), label=k.replace("_", " "))
    a.set_xlabel("step"); a.set_ylabel("loss"); a.legend(); a.grid(alpha=0.3)
    ev = [r for r in log if "miou" in r]
    b.plot([r["step"] for r in ev], [r["miou"] for r in ev], "o-", label="mIoU")
    b.plot([r["step"] for r in ev], [r["pixel_accuracy"] for r in ev], "s--", label="pixel accuracy")
    b.set_title(f"{len(VAL_SEEDS)} validation scenes, best background threshold")
    b.set_xlabel("step"); b.set_ylim(0, 1); b.legend(); b.grid(alpha=0.3)
    fig.suptitle("GroupViT on generated shapes, text supervision only")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def save(model, tok, out, size):
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "preprocessor_config.json"), "w") as f:
        json.dump({"image_processor_type": "CLIPImageProcessor", "do_resize": True,
                   "size": {"shortest_edge": size}, "resample": 3, "do_center_crop": True,
                   "crop_size": {"height": size, "width": size}, "do_rescale": True,
                   "rescale_factor": 1 / 255, "do_normalize": True,
                   "image_mean": MEAN.tolist(), "image_std": STD.tolist(), "do_convert_rgb": True}, f, indent=2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--pool", required=True, help="pool.py's scenes for training")
    ap.add_argument("--easy-pool", help="simpler scenes (pool.py --max-objects 2 --backgrounds plain)")
    ap.add_argument("--easy-steps", type=int, default=0, help="steps over which easy scenes fade out")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--patch", type=int, default=4)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--depths", default="2,1")
    ap.add_argument("--groups", default="8")
    ap.add_argument("--text-width", type=int, default=128)
    ap.add_argument("--text-layers", type=int, default=2)
    ap.add_argument("--itc", type=float, default=1.0)
    ap.add_argument("--image-ml", type=float, default=1.0)
    ap.add_argument("--group-ml", type=float, default=1.0)
    ap.add_argument("--commit", type=float, default=0.0)
    ap.add_argument("--tokens-ml", type=float, default=0.0)
    ap.add_argument("--background-flat", type=float, default=0.0)
    ap.add_argument("--commit-by", choices=["share", "group"], default="share",
                    help="weigh each group's commit term by its share of the image, or all held groups alike")
    ap.add_argument("--fixed-scale", type=float, help="keep the logit scale at this value instead of learning it")
    ap.add_argument("--soft-steps", type=int, default=0)
    ap.add_argument("--shapes-only", type=float, default=0.5, help="share of captions without colour words")
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--minutes", type=float, default=100, help="stop (resumably) after this long")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--init", help="start from this trained model (its weights, config and tokenizer) "
                                   "instead of from scratch; the model options are then ignored")
    ap.add_argument("--side", type=int, help="train on scenes resized to this many pixels a side (the "
                                             "position embeddings interpolated); evaluate at it too")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    weights = {"itc": args.itc, "image_ml": args.image_ml, "group_ml": args.group_ml, "commit": args.commit,
               "tokens_ml": args.tokens_ml, "background_flat": args.background_flat, "commit_by_share": args.commit_by == "share"}

    ckpt_path = os.path.join(args.out, "checkpoint.pt")
    resuming = args.resume and os.path.exists(ckpt_path)
    # A resumed run keeps its tokenizer: `tokenizers`' trainer breaks ties differently on every run.
    if resuming:
        tok = Tokenizer.from_file(os.path.join(args.out, "model", "tokenizer.json"))
    elif args.init:
        tok = Tokenizer.from_file(os.path.join(args.init, "tokenizer.json"))
    else:
        tok = train_tokenizer(args.seed)
    if args.init:
        model = GroupViTModel.from_pretrained(args.init, dtype=torch.float32)
        args.size = model.config.vision_config.image_size
        args.patch = model.config.vision_config.patch_size
    else:
        model = GroupViTModel(make_config(tok, args))
        init_like_nvlabs(model, args.seed)
    interpolating(model)
    model.vision_model.encoder.stages[0].downsample.register_forward_pre_hook(_keep_tokens, with_kwargs=True)
    if args.fixed_scale:
        # A moderate temperature keeps a background group's scores over object labels flat, which
        # is what the background threshold at inference relies on.
        with torch.no_grad():
            model.logit_scale.fill_(math.log(args.fixed_scale))
        model.logit_scale.requires_grad_(False)
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in trained if p.dim() >= 2 and "group_token" not in n and "position" not in n]
    no_decay = [p for n, p in trained if not (p.dim() >= 2 and "group_token" not in n and "position" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98))
    full = pools.load(args.pool)
    easy = pools.load(args.easy_pool) if args.easy_pool else None
    batches = Batches(tok, full, easy, args.easy_steps, args.batch, args.seed, args.shapes_only, args.side)
    prompts = token_ids(tok, [TEMPLATE.format(p) for p in PHRASES])
    val = load_scenes(VAL_SEEDS, args.size)
    os.makedirs(args.out, exist_ok=True)
    log_path = os.path.join(args.out, "log.jsonl")
    step, log, spent = 0, [], 0.0
    if resuming:
        state = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, spent = state["step"], state["minutes"]
        batches.rng = state["data_rng"]
        torch.set_rng_state(state["torch_rng"])
        with open(log_path) as f:
            log = [json.loads(line) for line in f]
        log = [r for r in log if r["step"] <= step]
        print(f"resumed at step {step} ({spent:.1f} min)", flush=True)
    else:
        with open(os.path.join(args.out, "args.json"), "w") as f:
            json.dump(vars(args), f, indent=1)
    with open(log_path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in log)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{n_params:,} parameters, vocabulary {tok.get_vocab_size()}", flush=True)

    def record(rec):
        log.append(rec)
        with open(log_path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        print(json.dumps(rec), flush=True)

    start = time.time() - spent * 60
    session = time.time()
    while step < args.steps:
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for grp in opt.param_groups:
            grp["lr"] = lr
        ASSIGN["soft"] = step < args.soft_steps
        model.train()
        freeze_batchnorm(model)
        x, ids, pos = batches(step)
        # bf16 matmuls (AVX-512 BF16) halve a step's time; weights and optimiser stay in f32.
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss, parts, stats = losses(model, x, ids, pos, prompts, weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        if step % 25 == 0:
            record({"step": step, "loss": loss.item(), **{k: v.item() for k, v in parts.items()}, **stats,
                    "lr": lr, "logit_scale": model.logit_scale.exp().item(), "minutes": (time.time() - start) / 60})
        last = step == args.steps
        out_of_time = (time.time() - session) / 60 > args.minutes
        if step % args.eval_every == 0 or last or out_of_time:
            model.eval()
            with torch.no_grad():
                m = evaluate(model, tok, val, TEMPLATE, side=args.side)
            record({"step": step, "miou": m["miou"], "pixel_accuracy": m["pixel_accuracy"],
                    "background_iou": m["background_iou"], "threshold": m["threshold"]})
            save(model, tok, os.path.join(args.out, "model"), args.size)
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                        "minutes": (time.time() - start) / 60, "data_rng": batches.rng,
                        "torch_rng": torch.get_rng_state()}, ckpt_path)
            plot(log, os.path.join(args.out, "curves.png"))
            if out_of_time and not last:
                print(f"out of time at step {step}: rerun with --resume to go on", flush=True)
                return
    record({"step": step, "done": True, "minutes": (time.time() - start) / 60})


if __name__ == "__main__":
    main()
