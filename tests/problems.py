"""Small float64 problems shared by the estimator tests (dense H and K are cheap)."""
import torch
from torch import nn

F64 = torch.float64


def cnn_problem(n=48, bn=False):
    """A 3x8x8 -> 5-class CNN (optionally with BatchNorm) and n random examples."""
    torch.manual_seed(1)
    layers = [nn.Conv2d(3, 6, 3, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(6))
    layers += [nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(96, 12), nn.Tanh(),
               nn.Linear(12, 5)]
    m = nn.Sequential(*layers).double()
    return m, nn.CrossEntropyLoss(), torch.randn(n, 3, 8, 8, dtype=F64), torch.randint(0, 5, (n,))
