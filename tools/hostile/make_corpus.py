#!/usr/bin/env python3
"""Writes tests/fixtures/hostile/: photos a user (or an attacker) might drop on groupseg, and a
manifest of every case `tests/hostile.rs` runs through the CLI beside one good photo.

Cases (see `cases.json`; `kind` says how the test uses each):
- `photo`: a file given as a photo: header bombs (dimensions far past the pixel budget, in every
  format), truncated and corrupted files, odd but valid images (1×1, extreme aspect ratios, 16-bit,
  grey with alpha, palette, CMYK JPEG, progressive JPEG, every EXIF orientation);
- `special`: things that are not files (a named pipe, /dev/zero, a folder, a missing path), made by
  the test itself;
- `options`: command lines whose options cannot work;
- `model`: damage done to a copy of a fixture checkpoint at test time (truncation, NaN weights, bad
  config, missing files).
`expect` is the CLI's exit status: 0 all done, 2 an option refused before any work, 3 the case
failed and the good photo was done, 1 nothing could run (a model that does not load). `names` is
text the error must contain (the photo's file name or the option).

Usage: make_corpus.py [OUT_DIR]   (deterministic: the same files on every run)
"""
import io
import json
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "hostile")


def picture(w=48, h=32, seed=0, noise=True):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    blue = rng.integers(0, 256, (h, w)) if noise else (xx + yy) % 256
    img = np.stack([(xx * 5) % 256, (yy * 7) % 256, blue], -1).astype(np.uint8)
    return Image.fromarray(img)


def encoded(img, fmt, **kw):
    b = io.BytesIO()
    img.save(b, fmt, **kw)
    return b.getvalue()


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_bomb(w, h, bit_depth=8, colour=2):
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, colour, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def jpeg_with_size(w, h):
    """A valid small JPEG whose frame header claims w × h."""
    data = bytearray(encoded(picture(16, 16), "JPEG", quality=90))
    i = 2
    while i < len(data):
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5:i + 9] = struct.pack(">HH", h, w)
            return bytes(data)
        i += 2 + length
    raise RuntimeError("no SOF marker")


def gif_screen_bomb(w, h):
    data = bytearray(encoded(picture(8, 8).convert("P"), "GIF"))
    data[6:10] = struct.pack("<HH", w, h)
    return bytes(data)


def bmp_header_bomb(w, h):
    data = bytearray(encoded(picture(8, 8), "BMP"))
    data[18:26] = struct.pack("<ii", w, h)
    return bytes(data)


def webp_animated_canvas(w, h):
    """An animated WebP: a 1×1 lossless frame on a w × h canvas (VP8X, ANIM, ANMF by hand)."""
    tiny = encoded(Image.new("RGB", (1, 1), (200, 10, 10)), "WEBP", lossless=True)
    frame = tiny[12:]  # the VP8L chunk
    def chunk(kind, payload):
        pad = b"\0" if len(payload) % 2 else b""
        return kind + struct.pack("<I", len(payload)) + payload + pad
    u24 = lambda v: struct.pack("<I", v)[:3]
    vp8x = chunk(b"VP8X", bytes([0x02, 0, 0, 0]) + u24(w - 1) + u24(h - 1))
    anim = chunk(b"ANIM", b"\0\0\0\0" + struct.pack("<H", 0))
    anmf = chunk(b"ANMF", u24(0) + u24(0) + u24(0) + u24(0) + u24(100) + bytes([0]) + frame)
    body = b"WEBP" + vp8x + anim + anmf
    return b"RIFF" + struct.pack("<I", len(body)) + body


def exif_jpeg(orientation):
    img = picture(24, 12, seed=orientation)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(img, "JPEG", quality=90, exif=exif.tobytes())


def main():
    os.makedirs(OUT, exist_ok=True)
    photos = {}  # file name → (bytes, expected exit status)
    good = picture(64, 48, seed=42)
    with open(os.path.join(OUT, "good.png"), "wb") as f:
        f.write(encoded(good, "PNG"))

    # Header bombs: the decoder would allocate gigabytes; the pixel budget refuses them first.
    photos["bomb-jpeg-30000.jpg"] = (jpeg_with_size(30000, 30000), 3)
    photos["bomb-jpeg-65535.jpg"] = (jpeg_with_size(65535, 65535), 3)
    photos["bomb-jpeg-1x65535.jpg"] = (jpeg_with_size(1, 65535), 3)
    photos["bomb-png-100000.png"] = (png_header_bomb(100000, 100000), 3)
    photos["bomb-png-16bit-30000.png"] = (png_header_bomb(30000, 30000, 16, 6), 3)
    photos["bomb-png-1x200000000.png"] = (png_header_bomb(1, 200_000_000), 3)
    photos["bomb-gif-screen-65535.gif"] = (gif_screen_bomb(65535, 65535), 3)
    photos["bomb-bmp-50000.bmp"] = (bmp_header_bomb(50000, 50000), 3)
    photos["bomb-bmp-negative.bmp"] = (bmp_header_bomb(-5, -2_000_000_000), 3)
    photos["bomb-webp-animated-16384.webp"] = (webp_animated_canvas(16384, 16384), 3)
    photos["bomb-webp-canvas-16384x1.webp"] = (webp_animated_canvas(16384, 1), 3)
    # A real 1-bit PNG of 20000×20000 (48 KB compressed, 400 megapixels).
    big = Image.new("1", (20000, 20000), 0)
    photos["bomb-png-1bit-20000.png"] = (encoded(big, "PNG", optimize=True), 3)
    del big

    # Broken files.
    good_png = encoded(good, "PNG")
    for fmt, ext in [("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp"), ("GIF", "gif"), ("BMP", "bmp")]:
        data = encoded(good if fmt != "GIF" else good.convert("P"), fmt)
        # Some decoders fill in a truncated file's missing part (JPEG does): either outcome is fine.
        photos[f"truncated-half.{ext}"] = (data[: len(data) // 2], None)
        photos[f"truncated-header.{ext}"] = (data[:12], 3)
        flipped = bytearray(data)
        for k in range(len(flipped) // 3, len(flipped) // 3 + 40):
            flipped[k] ^= 0xA5
        photos[f"corrupted-middle.{ext}"] = (bytes(flipped), None)  # decodes or not: either is fine
    photos["empty.png"] = (b"", 3)
    photos["text.jpg"] = (b"This is not a photo.\n" * 10, 3)
    photos["random.bin"] = (np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes(), 3)
    photos["png-bad-crc.png"] = (good_png[:29] + b"\0\0\0\0" + good_png[33:], None)
    photos["jpeg-soi-only.jpg"] = (b"\xff\xd8", 3)
    photos["png-signature-only.png"] = (b"\x89PNG\r\n\x1a\n", 3)
    photos["riff-not-webp.webp"] = (b"RIFF\x10\0\0\0WAVEfmt " + b"\0" * 8, 3)
    photos["zero-size-png.png"] = (png_header_bomb(0, 0), 3)

    # Odd but valid photos: all segmented.
    photos["one-pixel.png"] = (encoded(picture(1, 1), "PNG"), 0)
    photos["wide-2000x200.png"] = (encoded(picture(2000, 200, noise=False), "PNG"), 0)
    # Too narrow: at most 2048 long (the official cap), less than one patch wide. Refused by name.
    photos["wide-2000x1.png"] = (encoded(picture(2000, 1), "PNG"), 3)
    photos["tall-1x3000.png"] = (encoded(picture(1, 3000), "PNG"), 3)
    photos["grey-alpha.png"] = (encoded(picture().convert("LA"), "PNG"), 0)
    photos["palette.png"] = (encoded(picture().convert("P"), "PNG"), 0)
    photos["rgba.webp"] = (encoded(picture().convert("RGBA"), "WEBP", lossless=True), 0)
    photos["cmyk.jpg"] = (encoded(picture().convert("CMYK"), "JPEG"), 0)
    photos["progressive.jpg"] = (encoded(picture(), "JPEG", progressive=True), 0)
    photos["grey16.png"] = (encoded(Image.fromarray((np.arange(48 * 32).reshape(32, 48) * 40).astype(np.uint16)), "PNG"), 0)
    photos["png-named.jpg"] = (good_png, 0)
    for o in range(1, 9):
        photos[f"exif-orientation-{o}.jpg"] = (exif_jpeg(o), 0)
    photos["exif-orientation-99.jpg"] = (exif_jpeg(99), 0)
    photos["gif-animated.gif"] = (encoded(picture().convert("P"), "GIF", save_all=True,
                                          append_images=[picture(seed=1).convert("P")], duration=50), 0)

    cases = []
    for name, (data, expect) in sorted(photos.items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        cases.append({"kind": "photo", "file": name, "expect": expect, "names": [name] if expect != 0 else []})

    for name, path in [("named-pipe", "@fifo"), ("dev-zero", "/dev/zero"), ("folder", "@dir"),
                       ("missing", "@missing"), ("symlink-to-dev-zero", "@link-dev-zero")]:
        cases.append({"kind": "special", "file": path, "expect": 3, "names": [name if path.startswith("@") else path]})

    options = [
        (["--short-side", "1"], "--short-side"), (["--short-side", "100000"], "--short-side"),
        (["--short-side", "-3"], "--short-side"), (["--window", "3"], "window"), (["--window", "0"], "window"),
        (["--stride", "0"], "stride"), (["--stride", "500", "--window", "100"], "stride"),
        (["--background-threshold", "2"], "--background-threshold"),
        (["--background-threshold", "-1"], "--background-threshold"),
        (["--background-threshold", "nan"], "--background-threshold"),
        (["--opacity", "5"], "--opacity"), (["--opacity", "nan"], "--opacity"), (["--opacity", "inf"], "--opacity"),
        (["--raw-logits", "@dir"], "--raw-logits"), (["--raw-logits", "@missing-folder/x.npy"], "--raw-logits"),
        (["--out", "@file"], "--out"), (["--labels", ""], "--labels"), (["--labels", ", ,,"], "--labels"),
        (["--labels", "@many"], "--labels"), (["--template", "no placeholder"], "template"),
        (["--backend", "tpu"], "--backend"),
    ]
    # Options each fine alone whose windows over a photo would not fit the window budget: refused per
    # photo (exit 3), naming the photo and the stride; the good photo too, as the budget is its size's
    # (a long narrow photo could still fit).
    window_budget = [
        ["--short-side", "2048", "--stride", "1"], ["--window", "448", "--stride", "2", "--short-side", "1024"],
        ["--window", "16", "--stride", "3", "--short-side", "2048"],
    ]
    for args, names in options:
        cases.append({"kind": "options", "args": args, "expect": 2, "names": [names]})
    for args in window_budget:
        cases.append({"kind": "options", "args": args, "expect": 3, "names": ["stride", "good.png"], "good_fails": True})

    for damage in ["truncate-weights", "nan-weights", "inf-weights", "config-not-json", "config-bad-depths",
                   "config-bad-segmentation", "no-tokenizer", "no-weights", "garbage-weights", "wrong-shape"]:
        cases.append({"kind": "model", "damage": damage, "expect": 1, "names": ["@model"]})

    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"good": "good.png", "cases": cases}, f, indent=1)
    print(f"{OUT}: {len(cases)} cases, {sum(len(d) for d, _ in photos.values()) / 1e3:.0f} KB of photos")


if __name__ == "__main__":
    main()
