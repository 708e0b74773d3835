"""Normalization layers (LayerNorm, RMSNorm, GroupNorm, BatchNorm) with hand-written VJPs.

The forward follows `flax.nnx`'s numerics: statistics in at least float32, by default the
"fast" variance `E[x^2] - E[x]^2` clipped at 0, `y = (x - mean) * (rsqrt(var + eps) * scale) + bias`
and one rounding to the result dtype. Layouts are Flax's: channels last.

With `xhat = (x - mean) * rstd` over the reduction axes and `gxhat = dL/dxhat`,
`dL/dx = rstd * (gxhat - mean(gxhat) - xhat * mean(gxhat * xhat))`; RMSNorm drops the
`mean(gxhat)` term. The residuals keep `mean` and `rstd` as computed by the forward, so
differentiating the backward again reaches the input through them.
"""

from __future__ import annotations

import math
import typing as tp
from functools import partial
from types import MappingProxyType

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.module import first_from
from flax.nnx.nn import dtypes, initializers
from jax import lax


class _Config(tp.NamedTuple):
    """Static options of one normalization; axes are non-negative and sorted."""

    reduction: tuple[int, ...]
    feature: tuple[int, ...]
    epsilon: float
    use_mean: bool = True
    use_fast_variance: bool = True


def _axes(ndim: int, axes, name: str) -> tuple[int, ...]:
    axes = tuple(axes) if isinstance(axes, tp.Iterable) else (axes,)
    if not all(-ndim <= a < ndim for a in axes):
        raise ValueError(f"`{name}` (={axes}) out of range for an input of rank {ndim}")
    return tuple(sorted({a % ndim for a in axes}))


def _config(x, reduction_axes, feature_axes, epsilon, use_mean=True, use_fast_variance=True) -> _Config:
    return _Config(
        _axes(x.ndim, reduction_axes, "reduction_axes"), _axes(x.ndim, feature_axes, "feature_axes"),
        float(epsilon), use_mean, use_fast_variance,
    )


def _check_param(x, cfg: _Config, name: str, p) -> None:
    size = math.prod(x.shape[a] for a in cfg.feature)
    if p is not None and p.size != size:
        raise ValueError(f"`{name}` (shape {p.shape}) must have {size} elements, the size of the feature axes {cfg.feature}")


def _compute_dtype(dtype):
    return jnp.promote_types(dtype, jnp.float32)


def _feature_shape(cfg: _Config, shape) -> tuple[int, ...]:
    return tuple(n if a in cfg.feature else 1 for a, n in enumerate(shape))


def _stats(cfg: _Config, x):
    """`(mean, var)` of `x` over the reduction axes, kept as size-1 axes, as Flax computes them."""
    axes = cfg.reduction
    if not cfg.use_mean:
        var = jnp.mean(lax.square(x), axes, keepdims=True)
        return jnp.zeros_like(var), var
    mean = jnp.mean(x, axes, keepdims=True)
    if cfg.use_fast_variance:
        # E[x^2] - E[x]^2 can round below zero.
        return mean, jnp.maximum(0.0, jnp.mean(lax.square(x), axes, keepdims=True) - lax.square(mean))
    return mean, jnp.mean(lax.square(x - mean), axes, keepdims=True)


def _parts(cfg: _Config, x, scale, bias):
    """`(y, mean, rstd)`; `mean` and `rstd` in the compute dtype."""
    xc = x.astype(_compute_dtype(x.dtype))
    mean, var = _stats(cfg, xc)
    rstd = lax.rsqrt(var + cfg.epsilon)
    fshape = _feature_shape(cfg, x.shape)
    mul = rstd if scale is None else rstd * scale.reshape(fshape).astype(xc.dtype)
    y = (xc - mean) * mul
    if bias is not None:
        y = y + bias.reshape(fshape).astype(xc.dtype)
    return y.astype(dtypes.canonicalize_dtype(x, scale, bias)), mean, rstd


def _norm_impl(cfg, x, scale, bias):
    return _parts(cfg, x, scale, bias)[0]


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _norm(cfg, x, scale, bias):
    return _norm_impl(cfg, x, scale, bias)


def _norm_fwd(cfg, x, scale, bias):
    y, mean, rstd = _parts(cfg, x, scale, bias)
    return y, (x, mean, rstd, scale, bias)


def _xhat_vjp(cfg: _Config, xhat, rstd, gxhat):
    """`dL/dx` from `dL/dxhat`, through the statistics as well as the direct path."""
    inner = gxhat - xhat * jnp.mean(gxhat * xhat, cfg.reduction, keepdims=True)
    if cfg.use_mean:
        inner = inner - jnp.mean(gxhat, cfg.reduction, keepdims=True)
    return rstd * inner


def _param_grads(cfg: _Config, g, xhat, scale, bias):
    """Gradients of `scale` and `bias`: sums over every non-feature axis, in their own shapes."""
    others = tuple(a for a in range(g.ndim) if a not in cfg.feature)
    gscale = None if scale is None else jnp.sum(g * xhat, others).reshape(scale.shape).astype(scale.dtype)
    gbias = None if bias is None else jnp.sum(g, others).reshape(bias.shape).astype(bias.dtype)
    return gscale, gbias


def _norm_bwd(cfg, res, g):
    x, mean, rstd, scale, bias = res
    xhat = (x.astype(rstd.dtype) - mean) * rstd
    g = g.astype(rstd.dtype)
    gxhat = g if scale is None else g * scale.reshape(_feature_shape(cfg, x.shape)).astype(g.dtype)
    gx = _xhat_vjp(cfg, xhat, rstd, gxhat).astype(x.dtype)
    return (gx, *_param_grads(cfg, g, xhat, scale, bias))


_norm.defvjp(_norm_fwd, _norm_bwd)


def _group(x, groups: int):
    """`(..., C)` -> `(..., G, C // G)`."""
    return x.reshape(*x.shape[:-1], groups, x.shape[-1] // groups)


def _group_norm_impl(cfg, groups, x, scale, bias):
    return _norm_impl(cfg, _group(x, groups), scale, bias).reshape(x.shape)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _group_norm(cfg, groups, x, scale, bias):
    return _group_norm_impl(cfg, groups, x, scale, bias)


def _group_norm_fwd(cfg, groups, x, scale, bias):
    y, res = _norm_fwd(cfg, _group(x, groups), scale, bias)
    return y.reshape(x.shape), res


def _group_norm_bwd(cfg, groups, res, g):
    gx, gscale, gbias = _norm_bwd(cfg, res, _group(g, groups))
    return gx.reshape(g.shape), gscale, gbias


_group_norm.defvjp(_group_norm_fwd, _group_norm_bwd)


def _eval_parts(cfg: _Config, x, mean, var):
    """`(x - mean, rstd)` in the compute dtype, the running statistics in feature shape."""
    ct, fshape = _compute_dtype(x.dtype), _feature_shape(cfg, x.shape)
    rstd = lax.rsqrt(var.reshape(fshape).astype(ct) + cfg.epsilon)
    return x.astype(ct) - mean.reshape(fshape).astype(ct), rstd


def _batch_norm_eval_impl(cfg, x, mean, var, scale, bias):
    centered, rstd = _eval_parts(cfg, x, mean, var)
    fshape = _feature_shape(cfg, x.shape)
    mul = rstd if scale is None else rstd * scale.reshape(fshape).astype(rstd.dtype)
    y = centered * mul
    if bias is not None:
        y = y + bias.reshape(fshape).astype(y.dtype)
    return y.astype(dtypes.canonicalize_dtype(x, scale, bias))


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _batch_norm_eval(cfg, x, mean, var, scale, bias):
    return _batch_norm_eval_impl(cfg, x, mean, var, scale, bias)


def _batch_norm_eval_fwd(cfg, x, mean, var, scale, bias):
    return _batch_norm_eval_impl(cfg, x, mean, var, scale, bias), (x, mean, var, scale, bias)


def _batch_norm_eval_bwd(cfg, res, g):
    x, mean, var, scale, bias = res
    centered, rstd = _eval_parts(cfg, x, mean, var)
    xhat = centered * rstd
    g = g.astype(rstd.dtype)
    gxhat = g if scale is None else g * scale.reshape(_feature_shape(cfg, x.shape)).astype(g.dtype)
    others = tuple(a for a in range(x.ndim) if a not in cfg.feature)
    # The running statistics get their true gradients; stop_gradient them to hold them fixed.
    gmean = -jnp.sum(gxhat * rstd, others).reshape(mean.shape).astype(mean.dtype)
    gvar = (-0.5 * jnp.sum(gxhat * xhat * lax.square(rstd), others)).reshape(var.shape).astype(var.dtype)
    return ((gxhat * rstd).astype(x.dtype), gmean, gvar, *_param_grads(cfg, g, xhat, scale, bias))


_batch_norm_eval.defvjp(_batch_norm_eval_fwd, _batch_norm_eval_bwd)


def layer_norm(
    x: jax.Array, scale: jax.Array | None = None, bias: jax.Array | None = None, *,
    epsilon: float = 1e-6, reduction_axes=-1, feature_axes=-1, use_fast_variance: bool = True,
) -> jax.Array:
    """Layer normalization as `flax.nnx.LayerNorm` computes it, with a hand-written VJP.

    Args:
        x: any shape.
        scale, bias: as many elements as the feature axes of `x` hold (Flax keeps them flat,
            `(prod(feature dims),)`), or None.
        epsilon: added to the variance.
        reduction_axes: axes the statistics run over.
        feature_axes: axes that `scale` and `bias` span.

    Returns:
        `x`'s shape; the dtype `x`, `scale` and `bias` promote to.
    """
    cfg = _config(x, reduction_axes, feature_axes, epsilon, True, use_fast_variance)
    _check_param(x, cfg, "scale", scale)
    _check_param(x, cfg, "bias", bias)
    return _norm(cfg, x, scale, bias)


def rms_norm(
    x: jax.Array, scale: jax.Array | None = None, *,
    epsilon: float = 1e-6, reduction_axes=-1, feature_axes=-1, use_fast_variance: bool = True,
) -> jax.Array:
    """`x * rsqrt(mean(x^2) + epsilon) * scale`, as `flax.nnx.RMSNorm` computes it.

    Args: as `layer_norm`, without `bias`.
    """
    cfg = _config(x, reduction_axes, feature_axes, epsilon, False, use_fast_variance)
    _check_param(x, cfg, "scale", scale)
    return _norm(cfg, x, scale, None)


def _group_config(x, num_groups, reduction_axes, epsilon, use_fast_variance) -> _Config:
    if x.ndim < 2:
        raise ValueError(f"`x` (shape {x.shape}) must have a batch and a channel axis")
    if not isinstance(num_groups, int) or num_groups <= 0 or x.shape[-1] % num_groups:
        raise ValueError(f"`num_groups` (={num_groups}) must be a positive int dividing the channels (={x.shape[-1]})")
    if reduction_axes is None:
        reduction_axes = [*range(1, x.ndim - 1), -1]
    axes = _axes(x.ndim, reduction_axes, "reduction_axes")
    if axes[-1] != x.ndim - 1:
        raise ValueError(f"`reduction_axes` (={reduction_axes}) must include the channel axis (-1)")
    # Grouped `(..., G, C // G)`: statistics over the other axes and within each group.
    return _Config((*axes[:-1], x.ndim), (x.ndim - 1, x.ndim), float(epsilon), True, use_fast_variance)


def group_norm(
    x: jax.Array, num_groups: int, scale: jax.Array | None = None, bias: jax.Array | None = None, *,
    epsilon: float = 1e-6, reduction_axes=None, use_fast_variance: bool = True,
) -> jax.Array:
    """Group normalization as `flax.nnx.GroupNorm` computes it, channels last.

    Args:
        x: `(N, *spatial, C)`, `C` divisible by `num_groups`.
        scale, bias: `(C,)` or None.
        reduction_axes: by default every axis but the leading batch axis (the channel axis
            within each group).

    Returns:
        `x`'s shape.
    """
    cfg = _group_config(x, num_groups, reduction_axes, epsilon, use_fast_variance)
    for name, p in (("scale", scale), ("bias", bias)):
        if p is not None and p.size != x.shape[-1]:
            raise ValueError(f"`{name}` (shape {p.shape}) must have C (={x.shape[-1]}) elements")
    return _group_norm(cfg, num_groups, x, scale, bias)


def _batch_config(x, axis, epsilon, use_fast_variance) -> _Config:
    feature = _axes(x.ndim, axis, "axis")
    return _Config(tuple(a for a in range(x.ndim) if a not in feature), feature, float(epsilon), True, use_fast_variance)


def batch_norm(
    x: jax.Array, mean: jax.Array | None = None, var: jax.Array | None = None,
    scale: jax.Array | None = None, bias: jax.Array | None = None, *,
    use_running_average: bool = False, axis=-1, epsilon: float = 1e-5, use_fast_variance: bool = True,
) -> jax.Array:
    """Batch normalization as `flax.nnx.BatchNorm` computes it (the statistics are not updated here).

    Args:
        x: `(N, ..., C)` with the features on `axis`.
        mean, var: the running statistics `(C,)`, used (and required) when
            `use_running_average`; ignored otherwise.
        scale, bias: `(C,)` or None.
        use_running_average: normalize with `mean`/`var` instead of the batch's statistics.

    Returns:
        `x`'s shape.
    """
    cfg = _batch_config(x, axis, epsilon, use_fast_variance)
    names = {"scale": scale, "bias": bias, **({"mean": mean, "var": var} if use_running_average else {})}
    for name, p in names.items():
        _check_param(x, cfg, name, p)
    if not use_running_average:
        return _norm(cfg, x, scale, bias)
    if mean is None or var is None:
        raise ValueError("`mean` and `var` must be given when `use_running_average` is True")
    return _batch_norm_eval(cfg, x, mean, var, scale, bias)


def _unsupported(layer, **options) -> None:
    """Refuse the flax.nnx arguments out of scope here (cross-device statistics, masks), naming
    the built-in that takes them."""
    for name, value in options.items():
        if value is not None:
            raise ValueError(f"`{name}` (={value!r}) is not supported by this layer; pass None, or use flax.nnx.{type(layer).__name__}")


class LayerNorm(nnx.Module):
    """Drop-in for `flax.nnx.LayerNorm`: params `scale (num_features,)` (ones), `bias` (zeros).

    `axis_name`, `axis_index_groups` and `mask` must be None.

    Example:
        >>> LayerNorm(6, rngs=nnx.Rngs(0))(jnp.ones((2, 6))).shape
        (2, 6)
    """

    def __init__(
        self, num_features: int, *, epsilon: float = 1e-6, dtype=None, param_dtype=jnp.float32,
        use_bias: bool = True, use_scale: bool = True,
        bias_init=initializers.zeros_init(), scale_init=initializers.ones_init(),
        reduction_axes=-1, feature_axes=-1, axis_name=None, axis_index_groups=None,
        use_fast_variance: bool = True, promote_dtype=dtypes.promote_dtype, rngs: nnx.Rngs,
        bias_metadata: tp.Mapping[str, tp.Any] = MappingProxyType({}),
        scale_metadata: tp.Mapping[str, tp.Any] = MappingProxyType({}),
    ):
        _unsupported(self, axis_name=axis_name, axis_index_groups=axis_index_groups)
        shape = (num_features,)
        # Same key order as flax.nnx.LayerNorm, so equal Rngs give equal parameters.
        self.scale = nnx.Param(scale_init(rngs.params(), shape, param_dtype), **scale_metadata) if use_scale else nnx.data(None)
        self.bias = nnx.Param(bias_init(rngs.params(), shape, param_dtype), **bias_metadata) if use_bias else nnx.data(None)
        self.num_features, self.epsilon, self.dtype, self.param_dtype = num_features, epsilon, dtype, param_dtype
        self.use_bias, self.use_scale = use_bias, use_scale
        self.reduction_axes, self.feature_axes = reduction_axes, feature_axes
        self.axis_name, self.axis_index_groups = axis_name, axis_index_groups
        self.use_fast_variance, self.promote_dtype = use_fast_variance, promote_dtype

    def __call__(self, x, *, mask=None):
        _unsupported(self, mask=mask)
        scale = None if self.scale is None else self.scale[...]
        bias = None if self.bias is None else self.bias[...]
        x, scale, bias = self.promote_dtype((x, scale, bias), dtype=self.dtype)
        return layer_norm(
            x, scale, bias, epsilon=self.epsilon, reduction_axes=self.reduction_axes,
            feature_axes=self.feature_axes, use_fast_variance=self.use_fast_variance,
        )


class RMSNorm(nnx.Module):
    """Drop-in for `flax.nnx.RMSNorm`: param `scale (num_features,)` (ones)."""

    def __init__(
        self, num_features: int, *, epsilon: float = 1e-6, dtype=None, param_dtype=jnp.float32,
        use_scale: bool = True, scale_init=initializers.ones, reduction_axes=-1, feature_axes=-1,
        axis_name=None, axis_index_groups=None, use_fast_variance: bool = True,
        promote_dtype=dtypes.promote_dtype, rngs: nnx.Rngs,
        scale_metadata: tp.Mapping[str, tp.Any] = MappingProxyType({}),
    ):
        _unsupported(self, axis_name=axis_name, axis_index_groups=axis_index_groups)
        shape = (num_features,)
        self.scale = nnx.Param(scale_init(rngs.params(), shape, param_dtype), **scale_metadata) if use_scale else nnx.data(None)
        self.num_features, self.epsilon, self.dtype, self.param_dtype = num_features, epsilon, dtype, param_dtype
        self.use_scale, self.reduction_axes, self.feature_axes = use_scale, reduction_axes, feature_axes
        self.axis_name, self.axis_index_groups = axis_name, axis_index_groups
        self.use_fast_variance, self.promote_dtype = use_fast_variance, promote_dtype

    def __call__(self, x, mask=None):
        _unsupported(self, mask=mask)
        scale = None if self.scale is None else self.scale[...]
        x, scale = self.promote_dtype((x, scale), dtype=self.dtype)
        return rms_norm(
            x, scale, epsilon=self.epsilon, reduction_axes=self.reduction_axes,
            feature_axes=self.feature_axes, use_fast_variance=self.use_fast_variance,
        )


class GroupNorm(nnx.Module):
    """Drop-in for `flax.nnx.GroupNorm` on channels-last `(N, *spatial, C)`: `scale`/`bias` `(C,)`."""

    def __init__(
        self, num_features: int, num_groups: int | None = 32, group_size: int | None = None, *,
        epsilon: float = 1e-6, dtype=None, param_dtype=jnp.float32, use_bias: bool = True, use_scale: bool = True,
        bias_init=initializers.zeros_init(), scale_init=initializers.ones_init(), reduction_axes=None,
        axis_name=None, axis_index_groups=None, use_fast_variance: bool = True,
        promote_dtype=dtypes.promote_dtype, rngs: nnx.Rngs,
        bias_metadata: tp.Mapping[str, tp.Any] = MappingProxyType({}),
        scale_metadata: tp.Mapping[str, tp.Any] = MappingProxyType({}),
    ):
        _unsupported(self, axis_name=axis_name, axis_index_groups=axis_index_groups)
        self.feature_axis = -1
        if (num_groups is None) == (group_size is None):
            raise ValueError(f"exactly one of `num_groups` (={num_groups}) and `group_size` (={group_size}) must be given")
        if group_size is not None:
            if group_size <= 0 or num_features % group_size:
                raise ValueError(f"`group_size` (={group_size}) must be positive and divide `num_features` (={num_features})")
            num_groups = num_features // group_size
        elif not isinstance(num_groups, int) or num_groups <= 0 or num_features % num_groups:
            raise ValueError(f"`num_groups` (={num_groups}) must be a positive int dividing `num_features` (={num_features})")
        self.num_groups, self.group_size = num_groups, num_features // num_groups
        shape = (num_features,)
        self.scale = nnx.Param(scale_init(rngs.params(), shape, param_dtype), **scale_metadata) if use_scale else nnx.data(None)
        self.bias = nnx.Param(bias_init(rngs.params(), shape, param_dtype), **bias_metadata) if use_bias else nnx.data(None)
        self.epsilon, self.dtype, self.param_dtype = epsilon, dtype, param_dtype
        self.use_bias, self.use_scale, self.reduction_axes = use_bias, use_scale, reduction_axes
        self.axis_name, self.axis_index_groups = axis_name, axis_index_groups
        self.use_fast_variance, self.promote_dtype = use_fast_variance, promote_dtype

    def __call__(self, x, *, mask=None):
        _unsupported(self, mask=mask)
        scale = None if self.scale is None else self.scale[...]
        bias = None if self.bias is None else self.bias[...]
        x, scale, bias = self.promote_dtype((x, scale, bias), dtype=self.dtype)
        return group_norm(
            x, self.num_groups, scale, bias, epsilon=self.epsilon, reduction_axes=self.reduction_axes,
            use_fast_variance=self.use_fast_variance,
        )


class BatchNorm(nnx.Module):
    """Drop-in for `flax.nnx.BatchNorm`: params `scale`/`bias` `(C,)`, batch stats `mean`/`var` `(C,)`.

    In training (`use_running_average=False`) the batch's statistics normalize and the
    running ones move as Flax moves them: `new = momentum * old + (1 - momentum) * batch`,
    with the biased batch variance. `axis_name`, `axis_index_groups` and `mask` must be None.
    """

    def __init__(
        self, num_features: int, *, use_running_average: bool | None = False, axis: int = -1,
        momentum: float = 0.99, epsilon: float = 1e-5, dtype=None, param_dtype=jnp.float32,
        use_bias: bool = True, use_scale: bool = True,
        bias_init=initializers.zeros_init(), scale_init=initializers.ones_init(),
        axis_name=None, axis_index_groups=None, use_fast_variance: bool = True,
        promote_dtype=dtypes.promote_dtype, rngs: nnx.Rngs,
        bias_metadata: tp.Mapping[str, tp.Any] = MappingProxyType({}),
        scale_metadata: tp.Mapping[str, tp.Any] = MappingProxyType({}),
    ):
        _unsupported(self, axis_name=axis_name, axis_index_groups=axis_index_groups)
        shape = (num_features,)
        # Flax keeps the statistics in float32 whatever `param_dtype` is.
        self.mean = nnx.BatchStat(jnp.zeros(shape, jnp.float32))
        self.var = nnx.BatchStat(jnp.ones(shape, jnp.float32))
        self.scale = nnx.Param(scale_init(rngs.params(), shape, param_dtype), **scale_metadata) if use_scale else nnx.data(None)
        self.bias = nnx.Param(bias_init(rngs.params(), shape, param_dtype), **bias_metadata) if use_bias else nnx.data(None)
        self.num_features, self.use_running_average, self.axis = num_features, use_running_average, axis
        self.momentum, self.epsilon, self.dtype, self.param_dtype = momentum, epsilon, dtype, param_dtype
        self.use_bias, self.use_scale = use_bias, use_scale
        self.axis_name, self.axis_index_groups = axis_name, axis_index_groups
        self.use_fast_variance, self.promote_dtype = use_fast_variance, promote_dtype

    def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
        _unsupported(self, mask=mask)
        use_running_average = first_from(
            use_running_average, self.use_running_average,
            error_msg="No `use_running_average` argument was provided to BatchNorm: pass it to the constructor or the call.",
        )
        scale = None if self.scale is None else self.scale[...]
        bias = None if self.bias is None else self.bias[...]
        x, mean, var, scale, bias = self.promote_dtype((x, self.mean[...], self.var[...], scale, bias), dtype=self.dtype)
        options = {"axis": self.axis, "epsilon": self.epsilon, "use_fast_variance": self.use_fast_variance}
        if use_running_average:
            return batch_norm(x, mean, var, scale, bias, use_running_average=True, **options)
        cfg = _batch_config(x, self.axis, self.epsilon, self.use_fast_variance)
        batch_mean, batch_var = _stats(cfg, lax.stop_gradient(x).astype(_compute_dtype(x.dtype)))
        # Cast back explicitly: the statistics keep their dtype (Flax warns, then casts the same way).
        old_mean, old_var = self.mean[...], self.var[...]
        self.mean[...] = (self.momentum * old_mean + (1 - self.momentum) * batch_mean.reshape(-1)).astype(old_mean.dtype)
        self.var[...] = (self.momentum * old_var + (1 - self.momentum) * batch_var.reshape(-1)).astype(old_var.dtype)
        return batch_norm(x, scale=scale, bias=bias, **options)

    def set_view(self, use_running_average: bool | None = None):
        """Used by `nnx.view`: fixes `use_running_average`."""
        if use_running_average is not None:
            self.use_running_average = use_running_average
