"""softsign, `y = x / (1 + |x|)`, with a hand-written backward in PyTorch and in JAX."""
