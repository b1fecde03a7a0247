"""Composes docs/family.png from the browser test's screenshots of the page's five modes
(test-out/result-{segment,detect,ground,classify,groups}.png, written by
tests/browser/family.test.mjs): segment, detect and ground in the first row, classify and groups in
the second, on white, at half size. Needs Pillow.

python tools/docs/family_picture.py [test-out] [docs/family.png]
"""
import sys
from pathlib import Path

from PIL import Image

src = Path(sys.argv[1] if len(sys.argv) > 1 else "test-out")
dst = Path(sys.argv[2] if len(sys.argv) > 2 else "docs/family.png")
rows = [["segment", "detect", "ground"], ["classify", "groups"]]
gap = 8
shots = [[Image.open(src / f"result-{m}.png").convert("RGB") for m in row] for row in rows]
width = max(sum(i.width for i in row) + gap * (len(row) - 1) for row in shots)
height = sum(max(i.height for i in row) for row in shots) + gap * (len(shots) - 1)
out = Image.new("RGB", (width, height), "white")
y = 0
for row in shots:
    x = 0
    for i in row:
        out.paste(i, (x, y))
        x += i.width + gap
    y += max(i.height for i in row) + gap
# Half size: the page shows each result 1024 pixels wide.
out = out.resize((width // 2, height // 2), Image.LANCZOS)
out.save(dst, optimize=True)
print(f"{dst}: {out.width} x {out.height}")
