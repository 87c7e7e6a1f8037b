"""Throughput of the in-memory batch iterator (images/s), with and without the
papers' augmentation, against a torch DataLoader over the same tensors.

    python benchmarks/data_iterator.py [--n 45000] [--batch 128] [--threads 2]
"""
import argparse
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from breakeven_utils.core.data import BatchIterator, load_data


def rate(iterable, n_images):
    t = time.perf_counter()
    for x, _y in iterable:
        x.sum()  # touch the batch
    return n_images / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--n", type=int, default=45_000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_data(args.dataset, n_train=args.n)
    n = (args.n // args.batch) * args.batch
    rows = []
    plain = rate(BatchIterator(data.train, args.batch, seed=0).epoch(0), n)
    aug = rate(BatchIterator(data.train, args.batch, seed=0, augment=True).epoch(0), n)
    loader = DataLoader(TensorDataset(data.train.x, data.train.y), batch_size=args.batch,
                        shuffle=True, drop_last=True)
    anchor = rate(loader, n)
    rows += [("BatchIterator", plain, plain / anchor), ("BatchIterator + crop/flip", aug, aug / anchor),
             ("torch DataLoader (anchor)", anchor, 1.0)]
    print(f"{data.label}: {args.n} images, batch {args.batch}, {args.threads} threads")
    print(f"{'iterator':<28}{'images/s':>12}{'x anchor':>10}")
    for name, r, ratio in rows:
        print(f"{name:<28}{r:>12,.0f}{ratio:>10.1f}")


if __name__ == "__main__":
    main()
