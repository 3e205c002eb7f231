#!/usr/bin/env python3
"""PyTorch CPU timings of the ops that `dpo bench kernels` measures, at the
same shapes and thread count, printed as JSON lines {"op", "seconds", ...}.

Each op reports the median and the minimum of --repeat calls after warm-up,
like ours. Backward
is timed alone: the graph is built once and torch.autograd.grad runs on it
with retain_graph, for the same gradients our backward returns (conv: input
and weight; the others: every input and parameter).
Used by bench/run_kernels.sh; PyTorch is allowed here, never in tests.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F


def timed(fn, repeat, clock):
    start = time.perf_counter()
    runs = 0
    while runs < 2 or time.perf_counter() - start < 0.2:  # warm-up
        fn()
        runs += 1
    times = []
    for _ in range(repeat):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return statistics.median(times), min(times)


def backward_fn(out, inputs):
    dout = torch.randn_like(out)
    return lambda: torch.autograd.grad(out, inputs, dout, retain_graph=True)


def cases():
    r = torch.randn

    def sgemm(M, N, K):
        a, b = r(M, K), r(N, K)
        return lambda: torch.mm(a, b.t())

    def conv(C, H, W, OC, K, bwd):
        x, w, b = r(1, C, H, W, requires_grad=bwd), r(OC, C, K, K, requires_grad=bwd), r(OC)
        if not bwd:
            return lambda: F.conv2d(x, w, b, padding=K // 2)
        return backward_fn(F.conv2d(x, w, None, padding=K // 2), [x, w])

    def attn(H, Nq, Nk, D, bwd):
        q, k, v = (r(1, H, n, D, requires_grad=bwd) for n in (Nq, Nk, Nk))
        if not bwd:
            return lambda: F.scaled_dot_product_attention(q, k, v)
        return backward_fn(F.scaled_dot_product_attention(q, k, v), [q, k, v])

    def group_norm(C, HW, G, bwd):
        x, g, b = r(1, C, HW, requires_grad=bwd), r(C, requires_grad=bwd), r(C, requires_grad=bwd)
        if not bwd:
            return lambda: F.group_norm(x, G, g, b, 1e-5)
        return backward_fn(F.group_norm(x, G, g, b, 1e-5), [x, g, b])

    def layer_norm(N, C, bwd):
        x, g, b = r(N, C, requires_grad=bwd), r(C, requires_grad=bwd), r(C, requires_grad=bwd)
        if not bwd:
            return lambda: F.layer_norm(x, (C,), g, b, 1e-5)
        return backward_fn(F.layer_norm(x, (C,), g, b, 1e-5), [x, g, b])

    def linear(N, IC, OC, bwd):
        x, w, b = r(N, IC, requires_grad=bwd), r(OC, IC, requires_grad=bwd), r(OC, requires_grad=bwd)
        if not bwd:
            return lambda: F.linear(x, w, b)
        return backward_fn(F.linear(x, w, b), [x, w, b])

    def geglu(N, D, bwd):
        x = r(N, 2 * D, requires_grad=bwd)

        def f():
            h, gate = x.chunk(2, dim=-1)
            return h * F.gelu(gate)
        return backward_fn(f(), [x]) if bwd else f

    def silu(n, bwd):
        x = r(n, requires_grad=bwd)
        return backward_fn(F.silu(x), [x]) if bwd else (lambda: F.silu(x))

    def upsample(C, H, W, bwd):
        x = r(1, C, H, W, requires_grad=bwd)
        f = lambda: F.interpolate(x, scale_factor=2.0, mode="nearest")  # noqa: E731
        return backward_fn(f(), [x]) if bwd else f

    return [
        ("sgemm_2048", lambda: sgemm(2048, 2048, 2048)),
        ("sgemm_conv3x3_shape", lambda: sgemm(320, 4096, 2880)),
        ("conv3x3_fwd", lambda: conv(320, 64, 64, 320, 3, False)),
        ("conv3x3_bwd", lambda: conv(320, 64, 64, 320, 3, True)),
        ("conv1x1_fwd", lambda: conv(320, 64, 64, 320, 1, False)),
        ("conv1x1_bwd", lambda: conv(320, 64, 64, 320, 1, True)),
        ("self_attn_fwd", lambda: attn(8, 4096, 4096, 40, False)),
        ("self_attn_bwd", lambda: attn(8, 4096, 4096, 40, True)),
        ("cross_attn_fwd", lambda: attn(8, 4096, 77, 40, False)),
        ("cross_attn_bwd", lambda: attn(8, 4096, 77, 40, True)),
        ("group_norm_fwd", lambda: group_norm(320, 4096, 32, False)),
        ("group_norm_bwd", lambda: group_norm(320, 4096, 32, True)),
        ("layer_norm_fwd", lambda: layer_norm(4096, 320, False)),
        ("layer_norm_bwd", lambda: layer_norm(4096, 320, True)),
        ("linear_fwd", lambda: linear(4096, 320, 320, False)),
        ("linear_bwd", lambda: linear(4096, 320, 320, True)),
        ("geglu_fwd", lambda: geglu(4096, 1280, False)),
        ("geglu_bwd", lambda: geglu(4096, 1280, True)),
        ("silu_fwd", lambda: silu(320 * 4096, False)),
        ("silu_bwd", lambda: silu(320 * 4096, True)),
        ("upsample2x_fwd", lambda: upsample(320, 32, 32, False)),
        ("upsample2x_bwd", lambda: upsample(320, 32, 32, True)),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", help="run the one case of this name")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time with the process CPU clock (as dpo bench kernels --cpu-time)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for name, make in cases():
        if args.only and name != args.only:
            continue
        fn = make()
        with torch.set_grad_enabled(name.endswith("_bwd")):
            seconds, min_seconds = timed(fn, args.repeat,
                                         time.process_time if args.cpu_time else time.perf_counter)
        print(json.dumps({"op": name, "seconds": seconds, "min_seconds": min_seconds,
                          "threads": torch.get_num_threads(), "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
