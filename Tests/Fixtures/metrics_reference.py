#!/usr/bin/env python3
"""Writes scikit-learn's metrics for a random 21-class prediction, the reference for Kiln's
Cohen's kappa, macro-F1 and per-class precision/recall/F1 (run in a venv with scikit-learn; CI
never runs this; the Swift test reads the JSON it writes).

    python Tests/Fixtures/metrics_reference.py     # rewrites Tests/Fixtures/metrics/sklearn.json
"""
import json
import os

import numpy as np
from sklearn.metrics import cohen_kappa_score, f1_score, precision_recall_fscore_support

rng = np.random.default_rng(0)
classes = 21
truth = rng.integers(0, classes, 420)
# A classifier right about 80% of the time, its mistakes uniform; class 20 never predicted.
predicted = np.where(rng.random(420) < 0.8, truth, rng.integers(0, classes - 1, 420))
predicted[predicted == 20] = 19
labels = list(range(classes))
precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, labels=labels, zero_division=0)
reference = {
    "classes": classes,
    "truth": truth.tolist(),
    "predicted": predicted.tolist(),
    "kappa": cohen_kappa_score(truth, predicted),
    "macro_f1": f1_score(truth, predicted, average="macro", zero_division=0),
    "precision": precision.tolist(),
    "recall": recall.tolist(),
    "f1": f1.tolist(),
    "support": support.tolist(),
}
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "metrics", "sklearn.json")
os.makedirs(os.path.dirname(out), exist_ok=True)
with open(out, "w") as f:
    json.dump(reference, f)
print(f"kappa {reference['kappa']:.6f}, macro-F1 {reference['macro_f1']:.6f} -> {out}")
