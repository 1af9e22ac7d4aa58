#!/usr/bin/env python3
"""PyTorch baseline for `wgpu-rnn bench`: times torch.nn.LSTM / GRU / RNN on the same shapes
and writes the same JSON schema, so `wgpu-rnn compare` can put both side by side.

    python3 bench/pytorch_baseline.py --quick --device cpu --json torch-cpu.json
    python3 bench/pytorch_baseline.py --device cuda --json torch-cuda.json   # cuDNN, when present

On CUDA every case runs twice, FP32 with TF32 off ("cudnn-fp32") and on ("cudnn-tf32"),
reported as separate implementations. ConvLSTM2D has no PyTorch layer, so it is not timed here.

`--cells gemm` times torch.matmul on the GEMM shapes of `wgpu-rnn bench --cells gemm`
(default: M800 K128 N512 with B transposed and 512³, plus 2048³ without --quick;
`--gemm-shapes "M,K,N;..."` replaces them, row-major) as rows of cell "gemm" with M, K, N,
impl "torch-matmul-fp32"/"torch-matmul-tf32" on CUDA or "torch-cpu", so `wgpu-rnn compare`
joins them with ours.
Forward runs under no_grad; forward+backward uses L = ½·Σ out², i.e. dL/dout = out, the same
upstream gradient `wgpu-rnn bench` feeds its backward.
"""
import argparse
import json
import platform
import statistics
import time

import torch

CELLS = {"lstm": (torch.nn.LSTM, 4), "gru": (torch.nn.GRU, 3), "rnn": (torch.nn.RNN, 1)}


def shapes(quick, custom=None):
    # (B, T, I, H): the quick shape and DESIGN.md §6's standard shapes, as in src/bench.rs;
    # --shapes "B,T,I,H;..." replaces them (same syntax as `wgpu-rnn bench --shapes`).
    if custom:
        return [tuple(int(n) for n in s.split(",")) for s in custom.split(";") if s.strip()]
    return [(8, 100, 128, 128)] if quick else [(64, 100, 256, 256), (1, 1000, 64, 64), (256, 50, 512, 512)]


def gemm_shapes(quick, custom=None):
    # (M, K, N, B transposed): as src/bench/gemm.rs.
    if custom:
        return [tuple(int(n) for n in s.split(",")) + (False,) for s in custom.split(";") if s.strip()]
    base = [(800, 128, 512, True), (512, 512, 512, False)]
    return base if quick else base + [(2048, 2048, 2048, False)]


def gemm_rows(args, device, sync, variants):
    rows = []
    for (m, k, n, b_t) in gemm_shapes(args.quick, args.gemm_shapes):
        a = torch.randn(m, k, device=device)
        b = torch.randn(n, k, device=device).t() if b_t else torch.randn(k, n, device=device)
        for impl, tf32 in variants:
            if args.device == "cuda":
                torch.backends.cuda.matmul.allow_tf32 = tf32
                impl = "torch-matmul-" + ("tf32" if tf32 else "fp32")

            def mm():
                torch.matmul(a, b)

            med, lo, hi = measure(mm, max(args.runs, 5), sync)
            rows.append({
                "cell": "gemm", "pass": "forward", "B": 1, "T": 1, "M": m, "K": k, "N": n,
                "impl": impl, "median_ms": med, "min_ms": lo, "max_ms": hi,
                "recurrence_ms": None, "encode_ms": None,
                "gflops": 2.0 * m * n * k / med / 1e6, "dispatches": 0, "submits": 0,
                "timing": "wall",
            })
            print(f"gemm  forward           M{m} K{k} N{n} {impl:18} {med:9.3f} ms (min {lo:.3f})")
    return rows


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


def run(args):
    device = torch.device(args.device)
    if args.device == "cuda":
        sync = torch.cuda.synchronize
        variants = [("cudnn-fp32", False), ("cudnn-tf32", True)]
        name = torch.cuda.get_device_name(0)
        driver = f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
        device_type = "DiscreteGpu"
    else:
        sync = lambda: None  # noqa: E731
        variants = [("torch-cpu", False)]
        name = platform.processor() or platform.machine()
        driver = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
        device_type = "Cpu"
    results = []
    for cell in args.cells.split(","):
        if cell == "gemm":
            results.extend(gemm_rows(args, device, sync, variants))
            continue
        if cell not in CELLS:
            print(f"skipping {cell}: no PyTorch layer")
            continue
        module, gates = CELLS[cell]
        for (b, t, i, h) in shapes(args.quick, args.shapes):
            layer = module(i, h).to(device)
            x = torch.randn(t, b, i, device=device)
            flops = 2.0 * t * b * (i + h) * gates * h
            for impl, tf32 in variants:
                if args.device == "cuda":
                    torch.backends.cuda.matmul.allow_tf32 = tf32
                    torch.backends.cudnn.allow_tf32 = tf32

                def forward():
                    with torch.no_grad():
                        layer(x)

                def forward_backward():
                    layer.zero_grad(set_to_none=True)
                    xg = x.detach().requires_grad_(True)
                    out, _ = layer(xg)
                    (0.5 * (out * out).sum()).backward()

                for pass_name, fn, mult in [("forward", forward, 1.0), ("forward_backward", forward_backward, 3.0)]:
                    med, lo, hi = measure(fn, max(args.runs, 5), sync)
                    results.append({
                        "cell": cell, "pass": pass_name, "B": b, "T": t, "I": i, "H": h,
                        "impl": impl, "median_ms": med, "min_ms": lo, "max_ms": hi,
                        "recurrence_ms": None, "encode_ms": None,
                        "gflops": mult * flops / med / 1e6, "dispatches": 0, "submits": 0,
                        "timing": "wall",
                    })
                    print(f"{cell:5} {pass_name:17} B{b} T{t} I{i} H{h} {impl:11} {med:9.2f} ms (min {lo:.2f})")
    return {
        "adapter": {"name": name, "backend": args.device, "device_type": device_type, "driver": driver},
        "crate_version": f"torch-{torch.__version__}",
        "results": results,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the small shape only (B8 T100 I128 H128)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--cells", default="lstm,gru,rnn")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--json", help="write the report here")
    p.add_argument("--shapes", help='recurrent shapes "B,T,I,H;B,T,I,H" instead of the defaults')
    p.add_argument("--gemm-shapes", help='GEMM shapes "M,K,N;M,K,N" for --cells gemm instead of the defaults')
    args = p.parse_args()
    report = run(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
