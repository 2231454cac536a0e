"""GEMM GFLOP/s through numpy (Debian's python3-numpy, on the same OpenBLAS as converge's addon).

Prints one JSON line {"n": [...], "gflops": [...], "blas": ...}; the caller sets OPENBLAS_NUM_THREADS.
"""
import json, statistics, sys, time

import numpy as np

sizes = [int(s) for s in sys.argv[1].split(",")] if len(sys.argv) > 1 else [1024]
results = []
for n in sizes:
    a = np.random.rand(n, n).astype(np.float32)
    b = np.random.rand(n, n).astype(np.float32)
    c = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=c)
    times = []
    budget = time.perf_counter() + 1.5
    while len(times) < 3 or (time.perf_counter() < budget and len(times) < 200):
        t = time.perf_counter()
        np.matmul(a, b, out=c)
        times.append(time.perf_counter() - t)
    results.append(2 * n ** 3 / statistics.median(times) / 1e9)
# the BLAS library numpy really loaded, as the process's memory map shows it
with open("/proc/self/maps") as maps:
    blas = ", ".join(sorted({line.split()[-1] for line in maps if "blas" in line and "/" in line})) or "unknown"
print(json.dumps({"n": sizes, "gflops": results, "blas": blas}))
