"""Keras-exported test data for the Sequential model support (src/models/keras).

Writes, with the real Keras 3 (jax backend, float64):
  tests/data/models/configs/*.json      model.get_config() of the parameter-count models of
                                        issue 14 (LSTM/GRU/SimpleRNN, [64], [64,32], [128],
                                        5 features, Dense(1) head) and their Bidirectional
                                        versions, plus index.json {file: count_params()}
  tests/data/models/kg_*.safetensors (+ .json twins)   keras-model-golden-v1 cases (MODELS.md)
                                        covering what the shared goldens do not: pre- and
                                        post-padding masks, Masking, masked sequence losses,
                                        merge modes sum/mul/ave, GRU reset_after=False,
                                        go_backwards sequences, zero_output_for_mask,
                                        regularizers, trainable=False, use_bias=False,
                                        categorical cross-entropy, relu/hard_sigmoid.

The loss and gradients come from Keras' own training-loss path
(`model.compute_loss_and_updates`, as `fit` uses it: the prediction's mask and the
regularization losses included), differentiated by jax in inference mode.

Run:  python3 -m venv /tmp/kenv && /tmp/kenv/bin/pip install keras==3.15.1 "jax[cpu]"
      /tmp/kenv/bin/python scripts/keras_model_goldens.py
"""

import json
import os
import struct
import sys

os.environ["KERAS_BACKEND"] = "jax"
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
import keras  # noqa: E402
import numpy as np  # noqa: E402

keras.config.set_floatx("float64")
L = keras.layers
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "models")


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        dtype = {np.float32: "F32", np.int32: "I32"}[arr.dtype.type]
        data = arr.tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def counts():
    out = os.path.join(ROOT, "configs")
    os.makedirs(out, exist_ok=True)
    index = {}
    cells = {"lstm": L.LSTM, "gru": L.GRU, "rnn": L.SimpleRNN}
    for cname, cell in cells.items():
        for units in ([64], [64, 32], [128]):
            for bidi in (False, True):
                keras.backend.clear_session()
                layers = [keras.Input(shape=(30, 5))]
                for i, u in enumerate(units):
                    rnn = cell(u, return_sequences=i + 1 < len(units), dropout=0.2, recurrent_dropout=0.1)
                    layers.append(L.Bidirectional(rnn) if bidi else rnn)
                    layers.append(L.Dropout(0.2))
                layers.append(L.Dense(1))
                m = keras.Sequential(layers, name=f"{cname}_model")
                name = f"{'bi' if bidi else ''}{cname}_{'_'.join(map(str, units))}.json"
                with open(os.path.join(out, name), "w") as f:
                    json.dump(m.get_config(), f, indent=1)
                index[name] = m.count_params()
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f, indent=1, sort_keys=True)
    print(index)


def golden(case, layers, loss, x, y, seed):
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(layers, name="kg")
    model.compile(loss=loss)
    model(x[:1])
    rng = np.random.default_rng(seed)
    # Weights drawn per case, rounded to f32 (the file stores f32), run in f64.
    for v in model.weights:
        w = rng.uniform(-0.5, 0.5, size=v.shape).astype(np.float32)
        v.assign(w.astype(np.float64))
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    mv = [v.value for v in model.metrics_variables]

    def f(tv):
        loss_v, aux = model.compute_loss_and_updates(tv, ntv, mv, x, y, None, training=False)
        return loss_v, aux[1]

    (loss_v, pred), grads = jax.value_and_grad(f, has_aux=True)(tv)
    tensors = {
        "x": x.astype(np.int32) if x.dtype.kind == "i" else x.astype(np.float32),
        "y": y.astype(np.int32) if y.dtype.kind == "i" else y.astype(np.float32),
        "pred": np.asarray(pred, dtype=np.float32),
        "loss": np.asarray([loss_v], dtype=np.float32),
    }
    for v in model.weights:
        tensors["w/" + v.path.split("/", 1)[1]] = np.asarray(v.value, dtype=np.float32)
    for v, g in zip(model.trainable_variables, grads):
        tensors["grad/" + v.path.split("/", 1)[1]] = np.asarray(g, dtype=np.float32)
    meta = {
        "format": "keras-model-golden-v1",
        "case": case,
        "config": json.dumps(model.get_config()),
        "loss": loss,
        "param_count": str(model.count_params()),
        "versions": json.dumps({"keras": keras.__version__, "jax": jax.__version__}),
    }
    write_safetensors(os.path.join(ROOT, case + ".safetensors"), tensors, meta)
    twin = dict(meta, config=model.get_config(), versions=json.loads(meta["versions"]),
                param_count=model.count_params(),
                tensors={k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in tensors.items()})
    with open(os.path.join(ROOT, case + ".json"), "w") as f:
        json.dump(twin, f, indent=1)
    print(case, float(loss_v), sorted(k for k in tensors if k.startswith("grad/")))


def tokens(rng, b, t, vocab, lengths, pre):
    x = np.zeros((b, t), dtype=np.int32)
    for i, n in enumerate(lengths):
        ids = rng.integers(1, vocab, size=n)
        if pre:
            x[i, t - n:] = ids
        else:
            x[i, :n] = ids
    return x


def goldens():
    rng = np.random.default_rng(0)
    f64 = lambda *s: rng.uniform(-1, 1, size=s).astype(np.float32).astype(np.float64)  # noqa: E731

    # Pre-padding, masked sequence output and masked MSE (one row fully padded).
    x = tokens(rng, 4, 7, 20, [7, 4, 1, 0], pre=True)
    golden("kg_prepad_embed_lstm_seq_td_mse",
           [keras.Input((7,), dtype="int32"), L.Embedding(20, 5, mask_zero=True),
            L.LSTM(6, return_sequences=True), L.TimeDistributed(L.Dense(2))],
           "mean_squared_error", x, f64(4, 7, 2), 1)

    # Post-padding, Bidirectional GRU reset_after=False, merge sum, BCE.
    x = tokens(rng, 4, 6, 15, [6, 3, 5, 2], pre=False)
    golden("kg_postpad_embed_bigru_before_sum_bce",
           [keras.Input((6,), dtype="int32"), L.Embedding(15, 4, mask_zero=True),
            L.Bidirectional(L.GRU(5, reset_after=False), merge_mode="sum"),
            L.Dense(1, activation="sigmoid")],
           "binary_crossentropy", x, rng.integers(0, 2, size=(4, 1)).astype(np.float64), 2)

    # Masking layer (pre-padding and a masked step mid-sequence), SimpleRNN relu Bidirectional
    # mul with sequences, then Bidirectional LSTM ave, softmax, sparse CE.
    x = f64(3, 6, 3)
    x[0, :2] = 0.0
    x[1, 3] = 0.0
    x[2, 4:] = 0.0
    golden("kg_masking_birnn_relu_mul_bilstm_ave_sparse",
           [keras.Input((6, 3)), L.Masking(0.0),
            L.Bidirectional(L.SimpleRNN(4, activation="relu", return_sequences=True), merge_mode="mul"),
            L.Bidirectional(L.LSTM(5), merge_mode="ave"), L.Dense(3, activation="softmax")],
           "sparse_categorical_crossentropy", x, rng.integers(0, 3, size=(3,)).astype(np.int32), 3)

    # go_backwards sequence output into a second LSTM, regularizers, dropouts, MAE.
    golden("kg_lstm_backwards_seq_regularized_mae",
           [keras.Input((5, 3)),
            L.LSTM(4, go_backwards=True, return_sequences=True,
                   kernel_regularizer=keras.regularizers.L1L2(l1=0.01, l2=0.02),
                   recurrent_regularizer=keras.regularizers.L2(0.03),
                   bias_regularizer=keras.regularizers.L1(0.01), dropout=0.3),
            L.Dropout(0.25), L.LSTM(5, recurrent_dropout=0.2),
            L.Dense(2, activation="tanh", kernel_regularizer="l2")],
           "mean_absolute_error", f64(3, 5, 3), f64(3, 2), 4)

    # GRU without bias into TimeDistributed softmax, categorical CE with one-hot targets.
    y = np.eye(3)[rng.integers(0, 3, size=(2, 4))]
    golden("kg_gru_nobias_td_softmax_categorical",
           [keras.Input((4, 3)), L.GRU(5, use_bias=False, return_sequences=True),
            L.TimeDistributed(L.Dense(3, activation="softmax"))],
           "categorical_crossentropy", f64(2, 4, 3), y, 5)

    # Stacked masked layers with zero_output_for_mask, a frozen Embedding, relu/hard_sigmoid.
    x = tokens(rng, 3, 6, 12, [6, 2, 4], pre=True)
    x[0, 2] = 0  # a padding token mid-sequence
    golden("kg_masked_stack_zero_output_frozen_embed",
           [keras.Input((6,), dtype="int32"), L.Embedding(12, 3, mask_zero=True, trainable=False),
            L.LSTM(4, return_sequences=True, zero_output_for_mask=True,
                   activation="relu", recurrent_activation="hard_sigmoid"),
            L.SimpleRNN(3, return_sequences=True, go_backwards=True),
            L.GRU(4), L.Dense(2, activation="relu")],
           "mean_squared_error", x, f64(3, 2), 6)

    # Bidirectional with sequences under a mask into a masked per-step softmax loss.
    x = tokens(rng, 3, 5, 10, [5, 3, 2], pre=False)
    golden("kg_postpad_bilstm_concat_seq_td_sparse",
           [keras.Input((5,), dtype="int32"), L.Embedding(10, 4, mask_zero=True),
            L.Bidirectional(L.LSTM(3, return_sequences=True)),
            L.TimeDistributed(L.Dense(4, activation="softmax"))],
           "sparse_categorical_crossentropy", x, rng.integers(0, 4, size=(3, 5)).astype(np.int32), 7)


if __name__ == "__main__":
    what = sys.argv[1:] or ["counts", "goldens"]
    if "counts" in what:
        counts()
    if "goldens" in what:
        goldens()
