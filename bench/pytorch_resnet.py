"""The PyTorch side of bench/resnet: ResNet-20 (He et al. 2016, the CIFAR variant with projection
shortcuts: 272,186 parameters on one channel) trained on Fashion-MNIST with the recipe converge
uses: batch 64, SGD momentum 0.9, lr 0.05, weight decay 1e-4.

Prints one JSON line per epoch, {"epoch", "seconds" (training only), "imagesPerSecond",
"testAccuracy"}, then {"parameters"}. The caller sets OPENBLAS_NUM_THREADS with --threads
(Debian's torch sends matrix products to OpenBLAS, whose own threads set_num_threads does not limit).
"""
import argparse, json, os, sys, time

import numpy as np
import torch
from torch import nn

from pytorch_train import load  # the IDX reader bench/train's side uses


class Block(nn.Module):
    def __init__(self, inputs, filters, stride):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(inputs, filters, 3, stride, 1, bias=False), nn.BatchNorm2d(filters), nn.ReLU(),
            nn.Conv2d(filters, filters, 3, 1, 1, bias=False), nn.BatchNorm2d(filters))
        self.shortcut = nn.Sequential() if stride == 1 and inputs == filters else nn.Sequential(
            nn.Conv2d(inputs, filters, 1, stride, 0, bias=False), nn.BatchNorm2d(filters))

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


def resnet20(channels, classes):
    layers = [nn.Conv2d(channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    inputs = 16
    for filters in (16, 32, 64):
        for block in range(3):
            stride = 2 if block == 0 and filters != 16 else 1
            layers.append(Block(inputs, filters, stride))
            inputs = filters
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, classes)]
    return nn.Sequential(*layers)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=0, help="stop each epoch after this many steps (0: the whole epoch)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    read = lambda name: load(os.path.join(args.data_dir, name))
    x = torch.from_numpy(read("train-images-idx3-ubyte.gz").astype(np.float32) / 255).unsqueeze(1)
    y = torch.from_numpy(read("train-labels-idx1-ubyte.gz").astype(np.int64))
    tx = torch.from_numpy(read("t10k-images-idx3-ubyte.gz").astype(np.float32) / 255).unsqueeze(1)
    ty = torch.from_numpy(read("t10k-labels-idx1-ubyte.gz").astype(np.int64))
    net = resnet20(1, 10)
    if args.channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(args.epochs):
        net.train()
        order = torch.randperm(len(y))
        steps = len(y) // args.batch if args.steps == 0 else args.steps
        start = time.perf_counter()
        for s in range(steps):
            index = order[s * args.batch:(s + 1) * args.batch]
            batch = x[index]
            if args.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            optimizer.zero_grad()
            loss_fn(net(batch), y[index]).backward()
            optimizer.step()
        seconds = time.perf_counter() - start
        net.eval()
        with torch.no_grad():
            correct = sum((net(tx[i:i + 500]).argmax(1) == ty[i:i + 500]).sum().item() for i in range(0, len(ty), 500))
        print(json.dumps({"epoch": epoch + 1, "seconds": seconds, "imagesPerSecond": steps * args.batch / seconds, "testAccuracy": correct / len(ty)}), flush=True)
    print(json.dumps({"parameters": sum(p.numel() for p in net.parameters())}))


if __name__ == "__main__":
    sys.exit(main())
