"""groupseg's COCO files read by pycocotools (a reader nobody here wrote), for tests/coco.rs and the
browser tests.

  check.py masks COCO LABELS RESULTS
                                   every annotation decodes to its label's pixels in our label maps
                                   (LABELS: JSON {file_name: [width, height, raw little-endian u16
                                   label map file]}), areas and boxes as pycocotools computes them;
                                   RESULTS (the results format) loads as COCOeval's input
  check.py same A B                the same photos (by file name) with the same masks per label in
                                   both files (the page's download against the CLI's file)
  check.py evaluate SCENES SEGMENT DETECT
                                   the shapes scenes' truth (SCENES/labels.json, NNN-mask.png) as a
                                   COCO file; COCOeval's segm and bbox AP of the detections (DETECT)
                                   and of the labels' masks (SEGMENT), and mIoU / pixel accuracy of
                                   SEGMENT's masks against the truth; prints one JSON line last
"""

import contextlib
import io
import json
import os
import sys

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def quiet(fn, *args):
    """pycocotools prints its progress: keep it off our output."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def load(path):
    return quiet(COCO, path)


def check_masks(coco_path, labels_path, results_path):
    coco = load(coco_path)
    with open(labels_path) as f:
        label_maps = json.load(f)
    results = quiet(coco.loadRes, results_path)
    assert len(results.anns) == len(coco.anns), (len(results.anns), len(coco.anns))
    checked = 0
    for image in coco.dataset["images"]:
        width, height, raw = label_maps[image["file_name"]]
        assert (image["width"], image["height"]) == (width, height), image
        labels = np.fromfile(raw, dtype="<u2").reshape(height, width)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        by_category = {a["category_id"]: a for a in anns}
        assert len(by_category) == len(anns), f"{image['file_name']}: two annotations of one label"
        for cat in coco.getCatIds():
            truth = labels == cat
            ann = by_category.get(cat)
            if ann is None:
                assert not truth.any(), f"{image['file_name']}: label {cat} has pixels but no annotation"
                continue
            decoded = coco.annToMask(ann).astype(bool)
            assert (decoded == truth).all(), f"{image['file_name']}: label {cat}'s mask differs in {(decoded != truth).sum()} pixels"
            rle = coco.annToRLE(ann)
            assert int(mask_utils.area(rle)) == ann["area"], ann["area"]
            assert [int(v) for v in mask_utils.toBbox(rle)] == ann["bbox"], (ann["bbox"], mask_utils.toBbox(rle))
            checked += 1
    print(f"pycocotools: {len(coco.dataset['images'])} photos, {checked} annotations equal the label maps pixel for pixel")


def check_same(a_path, b_path):
    a, b = load(a_path), load(b_path)
    assert a.dataset["categories"] == b.dataset["categories"], (a.dataset["categories"], b.dataset["categories"])
    b_ids = {os.path.basename(img["file_name"]): img for img in b.dataset["images"]}
    assert sorted(b_ids) == sorted(os.path.basename(i["file_name"]) for i in a.dataset["images"]), "the same photos"
    masks = 0
    for img in a.dataset["images"]:
        other = b_ids[os.path.basename(img["file_name"])]
        assert (img["width"], img["height"]) == (other["width"], other["height"]), (img, other)
        for cat in a.getCatIds():
            ours = [a.annToMask(x) for x in a.loadAnns(a.getAnnIds(imgIds=[img["id"]], catIds=[cat]))]
            theirs = [b.annToMask(x) for x in b.loadAnns(b.getAnnIds(imgIds=[other["id"]], catIds=[cat]))]
            assert len(ours) == len(theirs), f"{img['file_name']}: label {cat}: {len(ours)} and {len(theirs)} masks"
            for m, n in zip(ours, theirs):
                assert (m == n).all(), f"{img['file_name']}: label {cat}'s masks differ in {(m != n).sum()} pixels"
                masks += 1
    print(f"pycocotools: {len(a.dataset['images'])} photos, {masks} masks the same in both files")


def truth_file(scenes_dir, categories):
    """The scenes' truth: one object per phrase of a scene, its class's pixels."""
    with open(os.path.join(scenes_dir, "labels.json")) as f:
        meta = json.load(f)
    classes = meta["classes"]
    assert [c["name"] for c in categories] == classes[1:], "the run's labels are the scenes' classes in order"
    images, annotations = [], []
    for i in range(len(meta["scenes"])):
        truth = np.array(Image.open(os.path.join(scenes_dir, f"{i:03d}-mask.png")))
        height, width = truth.shape
        images.append({"id": i + 1, "file_name": f"{i:03d}.png", "width": width, "height": height})
        for c in np.unique(truth):
            if c == 0:
                continue
            m = np.asfortranarray((truth == c).astype(np.uint8))
            rle = mask_utils.encode(m)
            rle["counts"] = rle["counts"].decode()
            x, y, w, h = (int(v) for v in mask_utils.toBbox(rle))
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(c),
                                "segmentation": rle, "area": int(m.sum()), "bbox": [x, y, w, h], "iscrowd": 0})
    return {"images": images, "annotations": annotations, "categories": categories}, classes


def results_for_truth(ours, truth):
    """Our annotations with the truth's image ids (matched by file name)."""
    ids = {os.path.basename(img["file_name"]): img["id"] for img in truth["images"]}
    ours_ids = {img["id"]: ids[os.path.basename(img["file_name"])] for img in ours["images"]}
    assert len(ours_ids) == len(truth["images"]), "every scene was labelled"
    return [dict(a, image_id=ours_ids[a["image_id"]]) for a in ours["annotations"]]


def average_precision(gt, results, kind):
    ev = COCOeval(gt, quiet(gt.loadRes, results), kind)
    quiet(ev.evaluate)
    quiet(ev.accumulate)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ev.summarize()
    # stats: AP@[.5:.95], AP@.5, AP@.75, …
    return {"AP": round(float(ev.stats[0]), 4), "AP50": round(float(ev.stats[1]), 4), "AP75": round(float(ev.stats[2]), 4)}


def evaluate(scenes_dir, segment_path, detect_path):
    with open(segment_path) as f:
        segment = json.load(f)
    with open(detect_path) as f:
        detect = json.load(f)
    load(segment_path), load(detect_path)
    truth, classes = truth_file(scenes_dir, segment["categories"])
    gt = COCO()
    gt.dataset = truth
    quiet(gt.createIndex)

    figures = {
        "scenes": len(truth["images"]),
        "labels": len(classes) - 1,
        "detect_segm": average_precision(gt, results_for_truth(detect, truth), "segm"),
        "detect_bbox": average_precision(gt, results_for_truth(detect, truth), "bbox"),
        "segment_segm": average_precision(gt, results_for_truth(segment, truth), "segm"),
    }

    # mIoU and pixel accuracy of the labels' masks, decoded by pycocotools (as tests/common/shapes.rs
    # counts them: intersections and unions summed over the scenes, mean over the classes seen).
    n = len(classes)
    inter, union = np.zeros(n, np.int64), np.zeros(n, np.int64)
    correct = total = 0
    by_name = {img["file_name"]: img for img in segment["images"]}
    for img in truth["images"]:
        ours_img = next(v for k, v in by_name.items() if os.path.basename(k) == img["file_name"])
        t = np.array(Image.open(os.path.join(scenes_dir, img["file_name"].replace(".png", "-mask.png")))).astype(np.int64)
        pred = np.zeros_like(t)
        for a in segment["annotations"]:
            if a["image_id"] == ours_img["id"]:
                pred[mask_utils.decode(a["segmentation"]).astype(bool)] = a["category_id"]
        correct += int((pred == t).sum())
        total += t.size
        for c in range(n):
            p, q = pred == c, t == c
            inter[c] += int((p & q).sum())
            union[c] += int((p | q).sum())
    seen = union > 0
    figures["segment_miou"] = round(float((inter[seen] / union[seen]).mean()), 4)
    figures["segment_pixel_accuracy"] = round(correct / total, 4)
    print(json.dumps(figures))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "masks":
        check_masks(*sys.argv[2:])
    elif len(sys.argv) == 4 and sys.argv[1] == "same":
        check_same(*sys.argv[2:])
    elif len(sys.argv) == 5 and sys.argv[1] == "evaluate":
        evaluate(*sys.argv[2:])
    else:
        sys.exit(__doc__)
