"""The scikit-learn side of bench/loaders: load_svmlight_file on one file, timed in-process.

Prints one JSON line: {"seconds", "rows", "nonZeros", "checksum"} (checksum: the sum of all values).
"""
import json, sys, time

from sklearn.datasets import load_svmlight_file

started = time.perf_counter()
x, y = load_svmlight_file(sys.argv[1])
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "rows": x.shape[0], "nonZeros": int(x.nnz), "checksum": float(x.data.sum())}))
