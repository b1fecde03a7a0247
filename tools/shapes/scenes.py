"""Generated scenes for the shapes demo model: 1–4 coloured shapes on a plain, gradient or textured
background, the caption a person would write for it, and the ground-truth mask of every object.

Everything comes from a seeded `random.Random`, so a seed names a scene: `scene(size, seed)` draws
the same picture on every machine. Shapes are drawn at 4× and box-filtered down (anti-aliased edges);
the mask takes the centre sample of each pixel, so a pixel belongs to the object covering its centre.
"""
import math
import random

import numpy as np
from PIL import Image, ImageDraw

# Object colours: saturated and far apart, so that a colour word names one hue.
COLOURS = {
    "red": (215, 35, 35),
    "green": (35, 165, 55),
    "blue": (35, 75, 215),
    "yellow": (240, 205, 30),
    "orange": (245, 130, 20),
    "purple": (135, 50, 185),
    "pink": (245, 120, 185),
}
SHAPES = ["circle", "square", "triangle", "star", "ring", "bar", "cross"]
# Backgrounds are grey-ish or muted, never an object colour.
PLAIN = {"grey": (128, 128, 128), "black": (22, 22, 22), "white": (236, 236, 236)}
MUTED = [(150, 140, 120), (95, 105, 115), (170, 170, 160), (70, 70, 80), (200, 195, 185), (120, 115, 100)]
BACKGROUNDS = list(PLAIN) + ["gradient", "striped", "checkered", "noisy"]
RELATIONS = ["next to", "beside", "near", "and"]
SUPERSAMPLE = 4


def phrase(colour, shape):
    return f"{colour} {shape}"


def all_phrases():
    return [phrase(c, s) for c in COLOURS for s in SHAPES]


def _jitter(rgb, rng, amount=18):
    return tuple(max(0, min(255, v + rng.randint(-amount, amount))) for v in rgb)


def _background(kind, n, rng):
    """An n × n RGB array for a background of the given kind."""
    if kind in PLAIN:
        return np.broadcast_to(np.array(_jitter(PLAIN[kind], rng, 10), np.float32), (n, n, 3)).copy()
    a, b = (np.array(_jitter(c, rng, 12), np.float32) for c in rng.sample(MUTED, 2))
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / (n - 1)
    if kind == "gradient":
        angle = rng.uniform(0, 2 * math.pi)
        t = (np.cos(angle) * xx + np.sin(angle) * yy)
        t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
    elif kind == "striped":
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(0.08, 0.2)
        t = (np.sin(2 * math.pi * (np.cos(angle) * xx + np.sin(angle) * yy) / period) > 0).astype(np.float32)
    elif kind == "checkered":
        cells = rng.randint(4, 9)
        t = ((np.floor(xx * cells) + np.floor(yy * cells)) % 2).astype(np.float32)
    else:  # noisy: smoothed value noise
        coarse = np.random.default_rng(rng.getrandbits(32)).random((8, 8)).astype(np.float32)
        t = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((n, n), Image.BICUBIC), np.float32) / 255
        fine = np.random.default_rng(rng.getrandbits(32)).random((n, n)).astype(np.float32)
        t = 0.75 * t + 0.25 * fine
    return a * (1 - t[..., None]) + b * t[..., None]


def _polygon(cx, cy, r, points, rot):
    return [(cx + r * math.cos(rot + 2 * math.pi * i / points), cy + r * math.sin(rot + 2 * math.pi * i / points))
            for i in range(points)]


def _rotated_rect(cx, cy, w, h, rot):
    c, s = math.cos(rot), math.sin(rot)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in ((-w, -h), (w, -h), (w, h), (-w, h))]


def _draw(draw, shape, cx, cy, r, rot, fill):
    """Draws one shape of radius r (pixels at the supersampled size) centred at (cx, cy)."""
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        inner = r * 0.55
        draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=0)
    elif shape == "square":
        draw.polygon(_rotated_rect(cx, cy, r * 0.8, r * 0.8, rot), fill=fill)
    elif shape == "triangle":
        draw.polygon(_polygon(cx, cy, r, 3, rot), fill=fill)
    elif shape == "star":
        pts = []
        for i in range(10):
            rr = r if i % 2 == 0 else r * 0.45
            a = rot + math.pi * i / 5
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        draw.polygon(pts, fill=fill)
    elif shape == "bar":
        draw.polygon(_rotated_rect(cx, cy, r, r * 0.32, rot), fill=fill)
    elif shape == "cross":
        draw.polygon(_rotated_rect(cx, cy, r, r * 0.3, rot), fill=fill)
        draw.polygon(_rotated_rect(cx, cy, r * 0.3, r, rot), fill=fill)
    else:
        raise ValueError(shape)


class Scene:
    """A picture (H × W × 3 uint8), its objects' phrases, a mask (0 = background, i = objects[i-1]),
    the background's name and a caption."""

    def __init__(self, image, objects, mask, background, caption):
        self.image, self.objects, self.mask, self.background, self.caption = image, objects, mask, background, caption

    def phrases(self):
        return [phrase(c, s) for c, s in self.objects]


def _relation_word(a, b):
    (ax, ay), (bx, by) = a, b
    if abs(ax - bx) > abs(ay - by):
        return "left of" if ax < bx else "right of"
    return "above" if ay < by else "below"


def _caption(rng, objects, centres, background):
    names = [f"{'an' if c[0] in 'aeiou' else 'a'} {phrase(c, s)}" for c, s in objects]
    bg = f"on a {background} background"
    style = rng.randrange(4)
    if len(names) == 1:
        body = [f"{names[0]}", f"a picture of {names[0]}", f"there is {names[0]}", f"{names[0]} alone"][style]
    elif len(names) == 2 and style == 0:
        body = f"{names[0]} {_relation_word(centres[0], centres[1])} {names[1]}"
    elif len(names) == 2 and style == 1:
        body = f"{names[0]} {rng.choice(RELATIONS)} {names[1]}"
    else:
        order = list(range(len(names)))
        rng.shuffle(order)
        listed = [names[i] for i in order]
        body = ", ".join(listed[:-1]) + " and " + listed[-1]
        if style == 3:
            body = f"{len(names)} shapes: " + body
    return body + (f" {bg}" if rng.random() < 0.8 else "")


def scene(size, seed, max_objects=4, backgrounds=None):
    """The scene named by `seed`, drawn at size × size; `backgrounds` restricts the background kinds
    (training curricula; the evaluation scenes use them all)."""
    rng = random.Random(seed)
    n = size * SUPERSAMPLE
    background = rng.choice(backgrounds or BACKGROUNDS)
    canvas = _background(background, n, rng)
    labels = Image.new("L", (n, n), 0)
    count = rng.randint(1, max_objects)
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    chosen = rng.sample(pairs, count)
    placed, centres = [], []
    for idx, (colour, shape) in enumerate(chosen, start=1):
        r = rng.uniform(0.13, 0.25) * n
        for _ in range(20):  # keep clear of the shapes already placed, as far as possible
            cx, cy = rng.uniform(r, n - r), rng.uniform(r, n - r)
            if all(math.hypot(cx - px, cy - py) > 0.8 * (r + pr) for px, py, pr in placed):
                break
        placed.append((cx, cy, r))
        centres.append((cx, cy))
        layer = Image.new("L", (n, n), 0)
        _draw(ImageDraw.Draw(layer), shape, cx, cy, r, rng.uniform(0, 2 * math.pi), 255)
        cover = np.asarray(layer, np.float32)[..., None] / 255
        canvas = canvas * (1 - cover) + np.array(_jitter(COLOURS[colour], rng), np.float32) * cover
        labels.paste(idx, mask=layer)
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8)).resize((size, size), Image.BOX)
    full = np.asarray(labels)
    half = SUPERSAMPLE // 2
    mask = full[half::SUPERSAMPLE, half::SUPERSAMPLE].copy()
    # Objects hidden under later ones are not in the scene any more: renumber what is visible.
    visible = [i for i in range(1, count + 1) if (mask == i).sum() >= 4]
    remap = np.zeros(count + 1, np.uint8)
    for new, old in enumerate(visible, start=1):
        remap[old] = new
    mask = remap[mask]
    objects = [chosen[i - 1] for i in visible]
    caption = _caption(rng, objects, [centres[i - 1] for i in visible], background)
    return Scene(np.asarray(image), objects, mask, background, caption)


def distractors(scene_, rng, k=2):
    """k phrases not in the scene (same vocabulary), for an honest segmentation test."""
    present = set(scene_.phrases())
    return rng.sample([p for p in all_phrases() if p not in present], k)
