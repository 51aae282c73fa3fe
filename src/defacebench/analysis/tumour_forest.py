"""A decision forest stored as plain arrays (.npz), so no pickle ever crosses versions.

scikit-learn fits the forest (``model_fitting/fit_tumour_model.py``); :func:`export_forest`
flattens each tree's ``tree_`` arrays into one set of concatenated arrays, and
:func:`predict_proba` walks all trees with vectorised numpy. The file loads with
any numpy, whatever scikit-learn is (or is not) installed.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

MODEL_FILE = "tumour_forest.npz"
REQUIRED_ARRAYS = ("left", "right", "feature", "threshold", "value", "roots", "classes", "metadata")


def export_forest(forest, path: str | Path, metadata: dict) -> Path:
    """Write a fitted scikit-learn forest (RandomForest/ExtraTrees classifier) to ``path`` (.npz).

    Node arrays of all trees are concatenated; child indices are made global;
    ``value`` holds each node's class probabilities as float16.
    """
    left, right, feature, threshold, value, roots = [], [], [], [], [], []
    offset = 0
    for est in forest.estimators_:
        t = est.tree_
        n = t.node_count
        roots.append(offset)
        is_leaf = t.children_left < 0
        left.append(np.where(is_leaf, -1, t.children_left + offset))
        right.append(np.where(is_leaf, -1, t.children_right + offset))
        feature.append(np.where(is_leaf, 0, t.feature))
        threshold.append(t.threshold)
        v = t.value[:, 0, :].astype(np.float64)
        value.append(v / np.maximum(v.sum(axis=1, keepdims=True), 1e-12))
        offset += n
    arrays = {
        "left": np.concatenate(left).astype(np.int32),
        "right": np.concatenate(right).astype(np.int32),
        "feature": np.concatenate(feature).astype(np.int16),
        "threshold": np.concatenate(threshold).astype(np.float32),
        "value": np.concatenate(value).astype(np.float16),
        "roots": np.asarray(roots, np.int32),
        "classes": np.asarray(forest.classes_, np.int16),
    }
    return write_forest(arrays, path, metadata)


def write_forest(arrays: dict, path: str | Path, metadata: dict) -> Path:
    """Write a forest's node arrays (as :func:`load_forest` returns them) with ``metadata`` to ``path`` (.npz).

    Also how a model's metadata (its post-processing settings) is replaced
    without refitting: ``write_forest(load_forest(p), p, new_metadata)``.
    """
    out = {k: np.asarray(arrays[k]) for k in REQUIRED_ARRAYS if k != "metadata"}
    out["metadata"] = np.asarray(json.dumps(metadata, sort_keys=True))
    path = Path(path)
    np.savez_compressed(path, **out)
    return path


@lru_cache(maxsize=4)
def load_forest(path: str | None = None) -> dict:
    """The shipped (or a given) forest as a dict of arrays plus parsed ``metadata``."""
    source = resources.files("defacebench").joinpath("data", MODEL_FILE) if path is None else Path(path)
    with source.open("rb") as fh, np.load(fh, allow_pickle=False) as npz:
        model = {k: npz[k] for k in npz.files}
    missing = set(REQUIRED_ARRAYS) - set(model)
    if missing:
        raise ValueError(f"tumour model file lacks arrays {sorted(missing)}")
    model["metadata"] = json.loads(str(model["metadata"]))
    return model


def predict_proba(model: dict, X: np.ndarray) -> np.ndarray:
    """Mean class probabilities over the trees, rows of ``X`` (float32) in, (n, n_classes) out.

    Each tree is walked node by node, splitting the row indices that reach a
    node between its children (one column comparison per node), rather than
    row by row: the same decisions as scikit-learn's ``predict_proba``, with
    numpy work proportional to rows x depth and no per-row gathers of the
    split parameters.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    left, right, feature, threshold, value = (model[k] for k in ("left", "right", "feature", "threshold", "value"))
    n_trees = len(model["roots"])
    out = np.zeros((X.shape[0], value.shape[1]), np.float32)
    columns = {}  # feature index -> contiguous column, shared by every tree
    for root in model["roots"]:
        stack = [(int(root), np.arange(X.shape[0]))]
        while stack:
            node, rows = stack.pop()
            if left[node] < 0:
                out[rows] += value[node].astype(np.float32)
                continue
            f = int(feature[node])
            if f not in columns:
                columns[f] = np.ascontiguousarray(X[:, f])
            go_left = columns[f][rows] <= threshold[node]
            for child, chosen in ((left[node], rows[go_left]), (right[node], rows[~go_left])):
                if chosen.size:
                    stack.append((int(child), chosen))
    return out / n_trees
