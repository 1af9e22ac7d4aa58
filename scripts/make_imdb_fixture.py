#!/usr/bin/env python3
"""Writes tests/data/imdb_numpy_{savez,compressed}.npz: tiny files in the layout of Keras'
imdb.npz (x_* object arrays of int lists, y_* int64 labels), saved by numpy itself, so the
Rust loader (src/data/imdb.rs) is also tested on bytes numpy wrote. Needs numpy (the files
checked in were made with numpy 2.4.6, which pickles object arrays with protocol 4).

    python3 scripts/make_imdb_fixture.py
"""
import os

import numpy as np


def obj(rows):
    a = np.empty(len(rows), dtype=object)
    for i, r in enumerate(rows):
        a[i] = list(r)
    return a


here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data")
arrays = dict(
    x_train=obj([[11, 19, 13], [1, 2, 3, 4, 5, 6], [40], list(range(1, 300, 7)) + [88586]]),
    y_train=np.array([1, 0, 1, 0], dtype=np.int64),
    x_test=obj([[7, 7], [3, 1000], []]),
    y_test=np.array([0, 1, 1], dtype=np.int64),
)
np.savez(os.path.join(here, "imdb_numpy_savez.npz"), **arrays)
np.savez_compressed(os.path.join(here, "imdb_numpy_compressed.npz"), **arrays)
