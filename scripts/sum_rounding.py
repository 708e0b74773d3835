"""Real float32 rounding of long sums against the rounding model's spread (docs/tolerances.md,
"Long sums"): `python scripts/sum_rounding.py`.

For each number of terms K: sums of K standard normal terms, sums of K positive terms and
matrix-vector products with K normal weights, in torch and in JAX (float32, on the CPU), each
result's error against extended precision divided by the model's spread (`jax_rounding.spread`,
float32's unit roundoffs); printed as root-mean-square / largest over the results.
"""

from __future__ import annotations

import numpy as np


def main() -> None:
    from crosscheck.adapters import opened
    from crosscheck.adapters.jax_rounding import noise, spread
    from crosscheck.compare import SPREAD_DRAWS, rounding_units

    with opened("cpu"):
        import jax.numpy as jnp
        import torch

        units, buffers = jnp.asarray(rounding_units("float32")), jnp.asarray(noise(SPREAD_DRAWS))
        rng = np.random.default_rng(0)
        print(f"{'op':8s} {'K':>5s}  torch rms / max   jax rms / max")
        for k in (8, 45, 256, 1024, 4096):
            m = max(64, 65536 // k)
            for op in ("sum", "matvec", "sum+"):
                a = rng.standard_normal((m, k)).astype(np.float32).astype(np.float64)
                a = np.abs(a) if op == "sum+" else a
                w = rng.standard_normal(k).astype(np.float32).astype(np.float64)
                if op == "matvec":
                    f = lambda x: x @ jnp.asarray(w)  # noqa: E731
                    exact = a.astype(np.longdouble) @ w.astype(np.longdouble)
                    t = torch.from_numpy(a).float() @ torch.from_numpy(w).float()
                    j = jnp.asarray(a, jnp.float32) @ jnp.asarray(w, jnp.float32)
                else:
                    f = lambda x: jnp.sum(x, axis=1)  # noqa: E731
                    exact = a.astype(np.longdouble).sum(1)
                    t = torch.from_numpy(a).float().sum(1)
                    j = jnp.sum(jnp.asarray(a, jnp.float32), axis=1)
                s = np.asarray(spread(f, (jnp.asarray(a),), units, buffers))
                exact = exact.astype(np.float64)
                zt = np.abs(t.double().numpy() - exact) / s
                zj = np.abs(np.asarray(j, np.float64) - exact) / s
                rms = lambda z: np.sqrt(np.mean(z**2))  # noqa: E731
                print(f"{op:8s} {k:5d}  {rms(zt):5.2f} / {zt.max():5.1f}     {rms(zj):5.2f} / {zj.max():5.1f}")


if __name__ == "__main__":
    main()
