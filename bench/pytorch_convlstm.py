#!/usr/bin/env python3
"""PyTorch ConvLSTM2D baseline for `wgpu-rnn bench --cells convlstm2d`: Keras semantics, timed
on the same shapes, written in the same JSON schema so `wgpu-rnn compare` joins the rows.

    python3 bench/pytorch_convlstm.py --json torch-convlstm.json            # CUDA when present
    python3 bench/pytorch_convlstm.py --quick --device cpu --json t.json
    wgpu-rnn compare ours.json torch-convlstm.json

PyTorch has no ConvLSTM layer; this is the loop people write, two ways (issue 12):
  concat   one convolution per step over concat(x_t, h_{t-1}) with the stacked kernel
           [kernel; recurrent_kernel] and the bias      (impl "torch-concat-...")
  hoisted  the input convolution of all B·T frames at once (+ bias), then one recurrent
           convolution of h_{t-1} per step              (impl "torch-hoisted-...")
Keras semantics: channels_last API (x is (B, T, rows, cols, Cin), outputs (B, T, rows, cols, F)),
gates i, f, c, o; i, f, o = sigmoid, g = act(z_c), c = f·c + i·g, h = o·act(c); "same"
padding, stride 1, return_sequences. The permutes to and from PyTorch's NCHW are inside the
timed call, as a user of a channels_last API pays them.

Shapes (B, T, rows×cols×1, F, kernel sizes per stacked layer), as `wgpu-rnn bench`:
  --quick   B2 T10 32×32×1 F16 [3]
  default   the quick shape, B8 T10 64×64×1 F40 [3] (the Moving-MNIST model's layer) and
            B8 T10 64×64×1 F64 [5, 3, 1] (the Keras next-frame example: 3 layers, relu)
On CUDA every case runs in FP32 with TF32 off ("-fp32") and on ("-tf32"), separate rows.
Forward runs under no_grad; forward+backward uses L = ½·Σ out², i.e. dL/dout = out (the
upstream gradient `wgpu-rnn bench` feeds its backward). Wall time with a device sync, median
of --runs after one warm-up. `--check` first asserts the two formulations agree.
"""
import argparse
import json
import platform
import statistics
import time

QUICK = [(2, 10, 32, 16, (3,))]
FULL = QUICK + [(8, 10, 64, 40, (3,)), (8, 10, 64, 64, (5, 3, 1))]


def flops(b, t, side, f, kernels):
    # 2·B·T·Ho·Wo·4F·k²·(Cin + F) per layer, as src/bench.rs.
    total, cin = 0.0, 1
    for k in kernels:
        total += 2.0 * b * t * side * side * 4 * f * k * k * (cin + f)
        cin = f
    return total


def build(torch, device, cin, f, kernels, relu, seed=1):
    """Keras-layout weights per layer: kernel (4F, Cin, k, k) and recurrent kernel (4F, F, k, k)
    in PyTorch's conv layout, bias (4F); gate blocks i, f, c, o along the 4F axis."""
    gen = torch.Generator().manual_seed(seed)
    layers = []
    for k in kernels:
        fan = k * k * (cin + f)
        scale = (6.0 / (fan + 4 * f)) ** 0.5
        wx = ((torch.rand(4 * f, cin, k, k, generator=gen) * 2 - 1) * scale).to(device)
        wh = ((torch.rand(4 * f, f, k, k, generator=gen) * 2 - 1) * scale).to(device)
        bias = ((torch.rand(4 * f, generator=gen) * 2 - 1) * 0.1).to(device)
        layers.append({
            "k": k, "wx": wx, "wh": wh, "bias": bias,
            "wcat": torch.cat([wx, wh], dim=1).contiguous(),
            "act": torch.relu if relu else torch.tanh,
        })
        cin = f
    return layers


def params(layers):
    out = []
    for lay in layers:
        out += [lay["wx"], lay["wh"], lay["bias"], lay["wcat"]]
    return out


def cell(torch, z, c, act, f):
    i, fg, g, o = torch.split(z, f, dim=1)
    i, fg, o = torch.sigmoid(i), torch.sigmoid(fg), torch.sigmoid(o)
    c = fg * c + i * act(g)
    return o * act(c), c


def layer_concat(torch, F, x, lay):
    # x: (B, T, Cin, H, W) -> (B, T, F, H, W); one conv per step over concat(x_t, h).
    b, t, _, hh, ww = x.shape
    f = lay["wh"].shape[1]
    h = x.new_zeros(b, f, hh, ww)
    c = x.new_zeros(b, f, hh, ww)
    outs = []
    for s in range(t):
        z = F.conv2d(torch.cat([x[:, s], h], dim=1), lay["wcat"], lay["bias"], padding="same")
        h, c = cell(torch, z, c, lay["act"], f)
        outs.append(h)
    return torch.stack(outs, dim=1)


def layer_hoisted(torch, F, x, lay):
    # The input conv of all B·T frames at once, then the recurrent conv per step.
    b, t, cin, hh, ww = x.shape
    f = lay["wh"].shape[1]
    zx = F.conv2d(x.reshape(b * t, cin, hh, ww), lay["wx"], lay["bias"], padding="same")
    zx = zx.reshape(b, t, 4 * f, hh, ww)
    h = x.new_zeros(b, f, hh, ww)
    c = x.new_zeros(b, f, hh, ww)
    outs = []
    for s in range(t):
        z = zx[:, s] + F.conv2d(h, lay["wh"], None, padding="same")
        h, c = cell(torch, z, c, lay["act"], f)
        outs.append(h)
    return torch.stack(outs, dim=1)


def model(torch, F, x_last, layers, way):
    """x_last: (B, T, rows, cols, Cin) channels_last; returns (B, T, rows, cols, F)."""
    x = x_last.permute(0, 1, 4, 2, 3)
    run = layer_concat if way == "concat" else layer_hoisted
    for lay in layers:
        x = run(torch, F, x, lay)
    return x.permute(0, 1, 3, 4, 2)


def measure(fn, runs, sync):
    fn()
    sync()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times), max(times)


def check(torch, F, device):
    """The two formulations agree (fp32, TF32 off) on a small odd shape, stacked, relu."""
    layers = build(torch, device, 1, 5, (5, 3, 1), relu=True, seed=3)
    x = torch.rand(2, 4, 9, 7, 1, device=device)
    with torch.no_grad():
        a = model(torch, F, x, layers, "concat")
        b = model(torch, F, x, layers, "hoisted")
    err = (a - b).abs().max().item()
    assert err <= 1e-5 + 1e-4 * a.abs().max().item(), f"concat and hoisted differ by {err}"
    print(f"check: concat and hoisted agree (max |diff| {err:.2e})")


def run(args):
    import torch
    import torch.nn.functional as F

    dev = args.device
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(dev)
    if dev == "cuda":
        sync = torch.cuda.synchronize
        variants = [("fp32", False), ("tf32", True)]
        name = torch.cuda.get_device_name(0)
        driver = (f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
                  f"cuDNN {torch.backends.cudnn.version()}")
        device_type = "DiscreteGpu"
        torch.backends.cudnn.benchmark = True
    else:
        sync = lambda: None  # noqa: E731
        variants = [("cpu", False)]
        name = platform.processor() or platform.machine()
        driver = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
        device_type = "Cpu"

    def set_tf32(on):
        if dev == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = on
            torch.backends.cudnn.allow_tf32 = on

    set_tf32(False)
    if args.check:
        check(torch, F, device)
    results = []
    for (b, t, side, f, kernels) in (QUICK if args.quick else FULL):
        layers = build(torch, device, 1, f, kernels, relu=len(kernels) > 1)
        x = torch.rand(b, t, side, side, 1, device=device)
        for way in args.ways.split(","):
            for suffix, tf32 in variants:
                set_tf32(tf32)
                impl = f"torch-{way}-{suffix}"

                def forward():
                    with torch.no_grad():
                        model(torch, F, x, layers, way)

                def forward_backward():
                    ps = params(layers)
                    for p in ps:
                        p.requires_grad_(True)
                        p.grad = None
                    out = model(torch, F, x, layers, way)
                    (0.5 * (out * out).sum()).backward()
                    for p in ps:
                        p.requires_grad_(False)

                for pass_name, fn, mult in [("forward", forward, 1.0),
                                            ("forward_backward", forward_backward, 3.0)]:
                    med, lo, hi = measure(fn, max(args.runs, 5), sync)
                    results.append({
                        "cell": "convlstm2d", "pass": pass_name, "B": b, "T": t,
                        "frame": [side, side, 1], "filters": f, "kernels": list(kernels),
                        "impl": impl, "median_ms": med, "min_ms": lo, "max_ms": hi,
                        "recurrence_ms": None, "encode_ms": None,
                        "gflops": mult * flops(b, t, side, f, kernels) / med / 1e6,
                        "dispatches": 0, "submits": 0, "timing": "wall",
                    })
                    ks = "/".join(str(k) for k in kernels)
                    print(f"convlstm2d {pass_name:17} B{b} T{t} {side}x{side}x1 F{f} k{ks} "
                          f"{impl:20} {med:9.2f} ms (min {lo:.2f})")
    set_tf32(False)
    return {
        "adapter": {"name": name, "backend": dev, "device_type": device_type, "driver": driver},
        "crate_version": f"torch-{torch.__version__}",
        "results": results,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[1:]))
    p.add_argument("--quick", action="store_true", help="the small shape only (B2 T10 32x32x1 F16)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto: cuda when available, else cpu")
    p.add_argument("--ways", default="concat,hoisted",
                   help="formulations to time, comma-separated: concat, hoisted")
    p.add_argument("--runs", type=int, default=5, help="timed runs per measurement (>= 5)")
    p.add_argument("--check", action="store_true",
                   help="first assert that the two formulations agree on a small shape")
    p.add_argument("--json", help="write the report here")
    args = p.parse_args()
    for way in args.ways.split(","):
        if way not in ("concat", "hoisted"):
            p.error(f"--ways: unknown formulation {way!r} (expected concat, hoisted)")
    report = run(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
