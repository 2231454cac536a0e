"""The scikit-learn side of bench/relaxed: SGDClassifier(loss='log_loss') on the same libsvm files.

One pass over the training set per epoch (partial_fit on the shuffled set), a constant learning
rate and the same L2 penalty as converge's run; after each epoch the test log loss and accuracy.
Prints one JSON line: {"epochs": [{"seconds", "testLoss", "testAccuracy"}, ...]}.
"""
import argparse, json, time

import numpy as np
from sklearn.datasets import load_svmlight_file
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import log_loss

parser = argparse.ArgumentParser()
parser.add_argument("train")
parser.add_argument("test")
parser.add_argument("--features", type=int, required=True)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--lr", type=float, default=0.5)
parser.add_argument("--l2", type=float, default=1e-6)
parser.add_argument("--seed", type=int, default=1)
args = parser.parse_args()

x_train, y_train = load_svmlight_file(args.train, n_features=args.features, dtype=np.float64)
x_test, y_test = load_svmlight_file(args.test, n_features=args.features, dtype=np.float64)
classes = np.array([-1.0, 1.0])
model = SGDClassifier(loss="log_loss", penalty="l2", alpha=args.l2, learning_rate="constant", eta0=args.lr, random_state=args.seed)
rng = np.random.default_rng(args.seed)
epochs = []
for epoch in range(args.epochs):
    order = rng.permutation(x_train.shape[0])
    start = time.perf_counter()
    model.partial_fit(x_train[order], y_train[order], classes=classes)
    seconds = time.perf_counter() - start
    probabilities = model.predict_proba(x_test)
    epochs.append({"seconds": seconds, "testLoss": float(log_loss(y_test, probabilities, labels=classes)),
                   "testAccuracy": float((model.predict(x_test) == y_test).mean())})
print(json.dumps({"epochs": epochs}))
