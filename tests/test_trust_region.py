"""The polish's trust-region step (gmoe._trust_region) against direct computations."""

import numpy as np
import pytest

from gmoe._trust_region import ScaledModel, next_radius


def _problem(seed: int, m: int = 6, negative: int = 0, spread: float = 1e3):
    """A symmetric information with ``negative`` negative eigenvalues and coordinates
    on scales ``spread`` apart, and a score."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(m, m)))
    eig = rng.uniform(0.5, 5.0, m)
    eig[:negative] *= -0.3
    units = np.exp(rng.uniform(0, np.log(spread), m))
    info = (Q * eig) @ Q.T * np.outer(units, units)
    return 0.5 * (info + info.T), rng.normal(size=m) * units


def _model_value(info, grad, s):
    return grad @ s - 0.5 * s @ info @ s


@pytest.mark.parametrize("seed", range(4))
def test_inside_a_large_ball_the_step_is_the_newton_step(seed):
    info, grad = _problem(seed)
    model = ScaledModel(info).at_score(grad)
    step, z, length = model.step(1e12)
    np.testing.assert_allclose(step, np.linalg.solve(info, grad), rtol=1e-9)
    assert model.gain(z) == pytest.approx(_model_value(info, grad, step), rel=1e-9)
    assert length == pytest.approx(np.linalg.norm(step / model.scale), rel=1e-12)


@pytest.mark.parametrize("negative", [0, 1, 2])
@pytest.mark.parametrize("seed", range(3))
def test_the_step_maximises_the_model_on_its_ball(seed, negative):
    """Against 20000 random points of the scaled ball (and the boundary): none is
    higher, the step lies on the boundary, and it solves (I + mu D^2) s = g with
    I + mu D^2 positive semi-definite (the More-Sorensen conditions)."""
    info, grad = _problem(seed, negative=negative)
    model = ScaledModel(info).at_score(grad)
    newton = np.linalg.norm(np.linalg.solve(info, grad) / model.scale)
    radius = 0.3 * newton if negative == 0 else 0.7
    step, z, length = model.step(radius)
    assert length == pytest.approx(radius, rel=1e-9)
    best = _model_value(info, grad, step)
    assert model.gain(z) == pytest.approx(best, rel=1e-9)
    rng = np.random.default_rng(100 + seed)
    u = rng.normal(size=(20000, len(grad)))
    u /= np.linalg.norm(u, axis=1)[:, None]
    u *= radius * rng.uniform(0, 1, size=(len(u), 1)) ** (1 / len(grad))
    u[:5000] *= radius / np.linalg.norm(u[:5000], axis=1)[:, None]
    candidates = u * model.scale                           # unscaled points of the ball
    values = candidates @ grad - 0.5 * np.einsum("ij,jk,ik->i", candidates, info,
                                                 candidates)
    assert values.max() <= best + 1e-9 * abs(best)
    # mu from the step: D (I + mu D^2) s = D g, i.e. scaled (I~ + mu) z = c
    D2 = 1.0 / model.scale**2
    mu = np.median((grad - info @ step) / (D2 * step))
    np.testing.assert_allclose(info @ step + mu * D2 * step, grad, rtol=1e-6,
                               atol=1e-8 * np.abs(grad).max())
    assert mu >= 0
    shifted = (info + mu * np.diag(D2)) * np.outer(model.scale, model.scale)
    assert np.linalg.eigvalsh(shifted)[0] >= -1e-9


def test_the_step_does_not_depend_on_the_units_of_the_coordinates():
    info, grad = _problem(7, negative=1)
    units = np.array([1e-3, 1.0, 1e4, 2.0, 0.5, 1e2])
    scaled = ScaledModel(info / np.outer(units, units)).at_score(grad / units)
    plain = ScaledModel(info).at_score(grad)
    for radius in (0.1, 1.0, 50.0):
        np.testing.assert_allclose(scaled.step(radius)[0] / units, plain.step(radius)[0],
                                   rtol=1e-8)


@pytest.mark.parametrize("along_lowest", [0.0, 1e-14, 5e-13, 1.5e-12, 1e-6])
def test_with_little_score_along_the_negative_curvature_the_step_reaches_the_ball(
        along_lowest):
    """The hard case and near it: the score has (almost) no part along the lowest
    eigenvector. The maximiser still lies on the boundary (the model rises along that
    eigenvector both ways), and the step is as good as any point of the ball."""
    info = np.diag([-1.0, 1.0, 2.0])
    grad = np.array([along_lowest, 1e-3, 1e-3])
    model = ScaledModel(info).at_score(grad)
    step, z, length = model.step(1.0)
    # near the hard case mu sits 1e-12 above -lambda_min = 1, where doubles are 2e-16
    # apart: the length is exact to about 1e-4
    assert length == pytest.approx(1.0, rel=1e-3)
    best = _model_value(info, grad, step)
    assert model.gain(z) == pytest.approx(best, rel=1e-9) and best > 0
    # the maximiser on the ball moves (almost) only along the lowest eigenvector: its
    # value is |lambda_min| / 2 plus what the score adds (to the length's precision)
    assert best >= 0.5 * (1 - 1e-3)


def test_the_radius_follows_the_ratio_of_gain_to_prediction():
    rounding = 1e-10
    # poor agreement shrinks to a quarter of the step
    assert next_radius(2.0, 2.0, predicted=1.0, gained=0.1, rounding=rounding) == 0.5
    # good agreement on the boundary doubles; inside the ball nothing changes
    assert next_radius(2.0, 2.0, predicted=1.0, gained=0.9, rounding=rounding) == 4.0
    assert next_radius(2.0, 1.0, predicted=1.0, gained=0.9, rounding=rounding) == 2.0
    assert next_radius(2.0, 2.0, predicted=1.0, gained=0.5, rounding=rounding) == 2.0
    # a gain at rounding level: on the boundary the ball grows (it must not freeze
    # near the top, where the ratio means nothing), inside it stays
    assert next_radius(1e-3, 1e-3, predicted=1e-12, gained=-1e-13,
                       rounding=rounding) == 2e-3
    assert next_radius(1e-3, 1e-4, predicted=1e-12, gained=3e-12,
                       rounding=rounding) == 1e-3


def test_the_modified_step_flips_and_floors_the_eigenvalues():
    info, grad = _problem(3, negative=2)
    model = ScaledModel(info).at_score(grad)
    step, promise, length = model.modified_step(1e-12)
    scaled = info * np.outer(model.scale, model.scale)
    w, V = np.linalg.eigh(scaled)
    direct = model.scale * (V @ ((V.T @ (model.scale * grad)) / np.abs(w)))
    np.testing.assert_allclose(step, direct, rtol=1e-9)
    assert promise == pytest.approx(grad @ direct, rel=1e-9)
    assert model.lowest == pytest.approx(w[0] / np.abs(w).max(), rel=1e-9)
    assert model.lowest < 0
