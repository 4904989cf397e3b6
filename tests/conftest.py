import numpy as np
import pytest

from gmoe import MoEParams


@pytest.fixture
def paper_truth() -> MoEParams:
    """The published reference setting (docs/theory.md, "The reference setting"; d = 1,
    k* = 2, softmax gate)."""
    return MoEParams(beta0=[-8.0, 0.0], beta1=[[25.0], [0.0]], a=[[-20.0], [20.0]],
                     b=[15.0, -5.0], var=[0.3**2, 0.4**2])


def random_params(rng: np.random.Generator, k: int, d: int, gate_scale: float = 2.0,
                  sep: float = 3.0) -> MoEParams:
    """Random softmax-normal-form parameters with moderately separated experts."""
    beta0 = rng.normal(0, 1, k)
    beta1 = rng.normal(0, gate_scale, (k, d))
    beta0[-1], beta1[-1] = 0.0, 0.0
    a = rng.normal(0, sep, (k, d))
    b = rng.normal(0, sep, k)
    var = rng.uniform(0.1, 0.5, k) ** 2
    return MoEParams(beta0, beta1, a, b, var)
