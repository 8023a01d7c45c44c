"""The ex-post prior's EM (lightning_gen.models.latent_prior.fit_gaussian_mixture) against scikit-learn's
GaussianMixture from the same start (means, weights, covariances) with the same stopping rule, on what the
quickstart fits at every validation: 4,096 codes of 64 dimensions, 20 full-covariance components.

    OMP_NUM_THREADS=1 python benchmarks/gmm_fit.py [--repeats 3] [--points 4096] [--dim 64] [--components 20]

The codes are a known 20-cluster mixture (seeded), so both fits can also be checked against each other: the table
prints each fit's wall time (min over repeats), iterations and mean log-likelihood of the data.
"""

from __future__ import annotations

import argparse
import time

import torch

import lightning_gen.models.latent_prior as latent_prior


def codes(points: int, dim: int, components: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    centres = 2.0 * torch.randn(components, dim, generator=generator)
    spread = 0.3 * torch.randn(dim, dim, generator=generator)
    which = torch.randint(components, (points,), generator=generator)
    return centres[which] + torch.randn(points, dim, generator=generator) @ spread


def ours(x: torch.Tensor, components: int) -> tuple[float, int, float]:
    iterations = 0
    original = latent_prior.GaussianMixture.log_prob_components

    def counted(self, points):
        nonlocal iterations
        iterations += 1
        return original(self, points)

    latent_prior.GaussianMixture.log_prob_components = counted
    try:
        start = time.perf_counter()
        mixture = latent_prior.fit_gaussian_mixture(x, components)
        seconds = time.perf_counter() - start
    finally:
        latent_prior.GaussianMixture.log_prob_components = original
    log_likelihood = torch.logsumexp(mixture.log_prob_components(x.double()), 1).mean().item()
    return seconds, iterations, log_likelihood


def sklearn_fit(x: torch.Tensor, components: int) -> tuple[float, int, float]:
    import numpy as np
    from sklearn.mixture import GaussianMixture

    data = x.double().numpy()
    start = torch.randperm(len(x), generator=torch.Generator(device="cpu").manual_seed(0))[:components].numpy()
    shared = np.cov(data.T) + latent_prior.REGULARISATION * np.eye(data.shape[1])
    model = GaussianMixture(
        components,
        covariance_type="full",
        reg_covar=latent_prior.REGULARISATION,
        tol=1e-3,
        max_iter=100,
        weights_init=np.full(components, 1.0 / components),
        means_init=data[start],
        precisions_init=np.repeat(np.linalg.inv(shared)[None], components, 0),
    )
    began = time.perf_counter()
    model.fit(data)
    return time.perf_counter() - began, int(model.n_iter_), float(model.score(data))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--points", type=int, default=4096)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--components", type=int, default=20)
    args = parser.parse_args()
    x = codes(args.points, args.dim, args.components)
    rows = {}
    for _ in range(args.repeats):  # interleaved
        for name, fit in (("lightning_gen EM (torch, float64)", ours), ("scikit-learn GaussianMixture", sklearn_fit)):
            seconds, iterations, log_likelihood = fit(x, args.components)
            print(f"{name}: {seconds:.2f} s, {iterations} iterations, mean log-likelihood {log_likelihood:.3f}", flush=True)
            best = rows.get(name)
            rows[name] = (min(seconds, best[0]) if best else seconds, iterations, log_likelihood)
    print(f"{args.points} codes × {args.dim} dims, {args.components} full-covariance components, {torch.get_num_threads()} thread(s)")
    print(f"| fit | seconds (min of {args.repeats}) | iterations | mean log-likelihood |")
    print("| --- | ---: | ---: | ---: |")
    for name, (seconds, iterations, log_likelihood) in rows.items():
        print(f"| {name} | {seconds:.2f} | {iterations} | {log_likelihood:.3f} |")


if __name__ == "__main__":
    main()
