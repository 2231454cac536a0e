"""The PyTorch side of bench/train: the same models, data, batch and optimiser as converge.

Prints one JSON line: {"model", "threads", "batch", "samplesPerSecond" (median of the timed
windows), "windows"}. Run by `converge`'s bench with Debian's python3-torch; the caller sets
OPENBLAS_NUM_THREADS (Debian's torch sends matrix products to OpenBLAS, whose own threads
torch.set_num_threads does not limit).
"""
import argparse, gzip, json, os, statistics, sys, time

import numpy as np
import torch
from torch import nn


def load(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def model(name):
    if name == "softmax":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each timed window")
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    images = torch.from_numpy(load(os.path.join(args.data_dir, "train-images-idx3-ubyte.gz")).astype(np.float32) / 255).unsqueeze(1)
    labels = torch.from_numpy(load(os.path.join(args.data_dir, "train-labels-idx1-ubyte.gz")).astype(np.int64))
    net = model(args.model)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    order = torch.randperm(len(labels))
    position = 0

    def step():
        nonlocal position
        if position + args.batch > len(order):
            position = 0
        index = order[position:position + args.batch]
        position += args.batch
        optimizer.zero_grad()
        loss = loss_fn(net(images[index]), labels[index])
        loss.backward()
        optimizer.step()

    for _ in range(20):  # warm-up
        step()
    rates = []
    for _ in range(args.windows):
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            step()
            steps += 1
        rates.append(steps * args.batch / (time.perf_counter() - start))
    print(json.dumps({"model": args.model, "threads": args.threads, "batch": args.batch,
                      "openblasThreads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
                      "samplesPerSecond": statistics.median(rates), "windows": rates}))


if __name__ == "__main__":
    sys.exit(main())
