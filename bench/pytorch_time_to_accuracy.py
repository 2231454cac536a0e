"""The PyTorch side of bench/time-to-accuracy: the model of bench/train (mlp or cnn) trained on
Fashion-MNIST with SGD momentum 0.9, lr 0.05, batch 64, evaluated on the whole test split every
--eval-every of an epoch (evaluation time excluded from the training time), until the test
accuracy reaches --target or --epochs pass.

Prints one JSON line: {"model", "seed", "threads", "target", "trainSecondsToTarget" (null: not
reached), "samplesToTarget", "evaluations": [[epochs, trainSeconds, accuracy], ...]}. The caller
sets OPENBLAS_NUM_THREADS.
"""
import argparse, json, os, sys, time

import numpy as np
import torch
from torch import nn

from pytorch_train import load, model


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--target", type=float, default=0.84)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--eval-every", type=float, default=0.25, help="epochs between evaluations")
    parser.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    read = lambda name: load(os.path.join(args.data_dir, name))
    images = torch.from_numpy(read("train-images-idx3-ubyte.gz").astype(np.float32) / 255).unsqueeze(1)
    labels = torch.from_numpy(read("train-labels-idx1-ubyte.gz").astype(np.int64))
    test_images = torch.from_numpy(read("t10k-images-idx3-ubyte.gz").astype(np.float32) / 255).unsqueeze(1)
    test_labels = torch.from_numpy(read("t10k-labels-idx1-ubyte.gz").astype(np.int64))
    net = model(args.model)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    steps = len(labels) // args.batch
    interval = max(1, round(args.eval_every * steps))

    def accuracy():
        net.eval()
        with torch.no_grad():
            correct = sum((net(test_images[i:i + 1000]).argmax(1) == test_labels[i:i + 1000]).sum().item() for i in range(0, len(test_labels), 1000))
        net.train()
        return correct / len(test_labels)

    trained, evaluations, reached = 0.0, [], None
    for epoch in range(args.epochs):
        order = torch.randperm(len(labels))
        start = time.perf_counter()
        for step in range(steps):
            index = order[step * args.batch:(step + 1) * args.batch]
            optimizer.zero_grad()
            loss_fn(net(images[index]), labels[index]).backward()
            optimizer.step()
            # as converge: every interval, and the epoch's end (none within half an interval of it)
            if ((step + 1) % interval == 0 and steps - (step + 1) >= interval / 2) or step + 1 == steps:
                trained += time.perf_counter() - start
                value = accuracy()
                evaluations.append([epoch + (step + 1) / steps, trained, value])
                if value >= args.target and reached is None:
                    reached = (trained, (epoch * steps + step + 1) * args.batch)
                start = time.perf_counter()
            if reached:
                break
        if reached:
            break
    print(json.dumps({"model": args.model, "seed": args.seed, "threads": args.threads, "openblasThreads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
                      "target": args.target, "trainSecondsToTarget": reached[0] if reached else None, "samplesToTarget": reached[1] if reached else None,
                      "evaluations": evaluations}))


if __name__ == "__main__":
    sys.exit(main())
