"""Cases for the normalization layers: LayerNorm, RMSNorm, GroupNorm, BatchNorm (train and eval).

torch's `weight (*normalized_shape)` is Flax's flat `scale`; GroupNorm and BatchNorm inputs are
NCHW on torch and NHWC on JAX. Each case sets the same epsilon on both sides (torch defaults to
1e-5, Flax's LayerNorm and RMSNorm to 1e-6). Inputs are standard normal over at least three
elements per statistic, so no variance is degenerate; the shape buckets keep enough (below).
"""

from __future__ import annotations

import functools
import math

from .. import draw
from ..convert.norm import BATCH_NORM, flat
from ..layout import IDENTITY, channels_last
from ..registry import Case, Tensor, register


def _affine_params(shape, weight=True, bias=True, layout=IDENTITY):
    out = (Tensor("weight", shape, layout=layout, jax_name="scale"),) if weight else ()
    return out + ((Tensor("bias", shape, layout=layout, jax_name="bias"),) if bias else ())


def _split(params, weight, bias):
    """`(weight, bias)` from the trailing params, None where a case has none."""
    it = iter(params)
    return (next(it) if weight else None), (next(it) if bias else None)


# The cases' functions and modules are module-level, their options bound by `functools.partial`
# in the case builders: they then pickle by reference, which closures do not. LayerNorm, RMSNorm
# and GroupNorm share one call shape, `op(x, arg, weight?, bias?, eps)`, and so their functions
# and modules; their JAX references differ.


def _epsilon(eps, dtype):
    """torch's `eps=None` (RMSNorm's default): the machine epsilon of the compute dtype (float32
    for half inputs); any other `eps` as it is."""
    import jax.numpy as jnp

    return float(jnp.finfo(jnp.promote_types(dtype, jnp.float32)).eps) if eps is None else eps


def _norm_torch(x, *p, op, arg, eps):
    from torch_layers import norm

    return getattr(norm, op)(x, arg, *p, eps=eps)


def _norm_torch_ref(x, *p, op, arg, eps):
    import torch.nn.functional as F

    return getattr(F, op)(x, arg, *p, eps=eps)


def _norm_jax(x, *p, op, lead, eps, **axes):
    """jax_layers.norm's `op(x, *lead, scale?, bias?, epsilon=eps, **axes)`."""
    from jax_layers import norm

    return getattr(norm, op)(x, *lead, *p, epsilon=_epsilon(eps, x.dtype), **axes)


def _norm_torch_module(dtype, device, *, cls, args, training=True, **options):
    """torch_layers.norm's `cls(*args, **options)`, in eval mode unless `training`."""
    from torch_layers import norm

    module = getattr(norm, cls)(*args, **options, dtype=dtype, device=device)
    return module if training else module.eval()


def _norm_jax_module(dtype, *, cls, features, eps, **options):
    """jax_layers.norm's `cls(features, epsilon=eps, **options)`."""
    from flax import nnx

    from jax_layers import norm

    epsilon = _epsilon(eps, dtype)
    return getattr(norm, cls)(features, epsilon=epsilon, **options, dtype=dtype, param_dtype=dtype, rngs=nnx.Rngs(0))


def _functions(op, torch_arg, eps, jax_lead=(), **axes):
    """`torch_fn`, `torch_ref` and `jax_fn` of the shared call shape, for `Case(**...)`."""
    return dict(
        torch_fn=functools.partial(_norm_torch, op=op, arg=torch_arg, eps=eps),
        torch_ref=functools.partial(_norm_torch_ref, op=op, arg=torch_arg, eps=eps),
        jax_fn=functools.partial(_norm_jax, op=op, lead=jax_lead, eps=eps, **axes),
    )


def _layer_norm_jax_ref(x, *p, shape, axes, eps, weight, bias):
    import jax

    w, b = _split(p, weight, bias)
    y = jax.nn.standardize(x, axis=axes, epsilon=eps)
    y = y if w is None else y * w.reshape(shape)
    return y if b is None else y + b.reshape(shape)


def _layer_norm_case(name, batch, shape, eps=1e-5, affine=True, bias=True):
    axes = tuple(range(-len(shape), 0))
    has_w, has_b = affine, affine and bias
    return Case(
        name=name, family="norm", inputs=(Tensor("input", (*batch, *shape)),),
        params=_affine_params(shape, has_w, has_b, flat(shape)),
        **_functions("layer_norm", shape, eps, reduction_axes=axes, feature_axes=axes),
        jax_ref=functools.partial(_layer_norm_jax_ref, shape=shape, axes=axes, eps=eps, weight=has_w, bias=has_b),
        torch_module=functools.partial(_norm_torch_module, cls="LayerNorm", args=(shape,), eps=eps,
                                       elementwise_affine=affine, bias=bias),
        jax_module=functools.partial(_norm_jax_module, cls="LayerNorm", features=math.prod(shape), eps=eps,
                                     use_scale=has_w, use_bias=has_b, reduction_axes=axes, feature_axes=axes),
        description=f"x {(*batch, *shape)} over {shape}, eps={eps}, weight={has_w}, bias={has_b}",
    )


def _rms_norm_jax_ref(x, *p, shape, axes, eps):
    import jax.numpy as jnp
    from jax import lax

    y = x * lax.rsqrt(jnp.mean(jnp.square(x), axes, keepdims=True) + _epsilon(eps, x.dtype))
    return y * p[0].reshape(shape) if p else y


def _rms_norm_case(name, batch, shape, eps=1e-6, weight=True):
    axes = tuple(range(-len(shape), 0))
    return Case(
        name=name, family="norm", inputs=(Tensor("input", (*batch, *shape)),),
        params=_affine_params(shape, weight, False, flat(shape)),
        **_functions("rms_norm", shape, eps, reduction_axes=axes, feature_axes=axes),
        jax_ref=functools.partial(_rms_norm_jax_ref, shape=shape, axes=axes, eps=eps),
        torch_module=functools.partial(_norm_torch_module, cls="RMSNorm", args=(shape,), eps=eps,
                                       elementwise_affine=weight),
        jax_module=functools.partial(_norm_jax_module, cls="RMSNorm", features=math.prod(shape), eps=eps,
                                     use_scale=weight, reduction_axes=axes, feature_axes=axes),
        description=f"x {(*batch, *shape)} over {shape}, eps={eps}, weight={weight}",
    )


def _group_norm_jax_ref(x, *p, groups, c, nd, eps, affine):
    import jax

    xg = x.reshape(*x.shape[:-1], groups, c // groups)
    y = jax.nn.standardize(xg, axis=(*range(1, nd - 1), nd), epsilon=eps).reshape(x.shape)
    return y * p[0] + p[1] if affine else y


def _group_norm_case(name, in_shape, groups, eps=1e-5, affine=True):
    c, nd = in_shape[1], len(in_shape)
    lay = channels_last(nd - 2)
    return Case(
        name=name, family="norm", inputs=(Tensor("input", in_shape, layout=lay),),
        params=_affine_params((c,), affine, affine), out_layouts=(lay,),
        **_functions("group_norm", groups, eps, jax_lead=(groups,)),
        jax_ref=functools.partial(_group_norm_jax_ref, groups=groups, c=c, nd=nd, eps=eps, affine=affine),
        torch_module=functools.partial(_norm_torch_module, cls="GroupNorm", args=(groups, c), eps=eps, affine=affine),
        jax_module=functools.partial(_norm_jax_module, cls="GroupNorm", features=c, eps=eps, num_groups=groups,
                                     use_scale=affine, use_bias=affine),
        description=f"x {in_shape} (NC*; N*C on JAX), {groups} groups, eps={eps}, affine={affine}",
    )


def _batch_norm_parts(args, running, affine):
    """`(input, weight?, bias?, running_mean?, running_var?)` -> all five, None where absent."""
    x, *rest = args
    mean, var = rest[-2:] if running else (None, None)
    return x, mean, var, *_split(rest, affine, affine)


def _batch_norm_torch(*args, running, affine, eps):
    from torch_layers.norm import batch_norm

    x, mean, var, w, b = _batch_norm_parts(args, running, affine)
    return batch_norm(x, mean, var, w, b, training=not running, eps=eps)


def _batch_norm_torch_ref(*args, running, affine, eps, stats_grad, view):
    """`view`: the channels' shape `(1, C, 1...)` against the input."""
    import torch
    import torch.nn.functional as F

    x, mean, var, w, b = _batch_norm_parts(args, running, affine)
    if not stats_grad:
        return F.batch_norm(x, mean, var, w, b, training=not running, eps=eps)
    # F.batch_norm refuses running statistics that require grad: the same math from plain ops.
    y = (x - mean.view(view)) * torch.rsqrt(var.view(view) + eps)
    return y * w.view(view) + b.view(view) if affine else y


def _batch_norm_jax(*args, running, affine, eps):
    from jax_layers.norm import batch_norm

    x, mean, var, w, b = _batch_norm_parts(args, running, affine)
    return batch_norm(x, mean, var, w, b, use_running_average=running, epsilon=eps)


def _batch_norm_jax_ref(*args, running, affine, eps, axes):
    import jax

    x, mean, var, w, b = _batch_norm_parts(args, running, affine)
    y = jax.nn.standardize(x, axis=axes, mean=mean, variance=var, epsilon=eps)
    return y * w + b if affine else y


def _batch_norm_modules(c, eps, affine, running):
    """BatchNorm2d / nnx.BatchNorm builders; with `running`, in eval mode: the harness loads the
    drawn running statistics into the buffers / batch stats, as it loads the parameters."""
    torch_module = functools.partial(_norm_torch_module, cls="BatchNorm2d", args=(c,), training=not running,
                                     eps=eps, affine=affine)
    jax_module = functools.partial(_norm_jax_module, cls="BatchNorm", features=c, eps=eps,
                                   use_running_average=running, use_scale=affine, use_bias=affine)
    return torch_module, jax_module


def _batch_norm_case(name, in_shape, eps=1e-5, affine=True, running=False, modules=True, stats_grad=False):
    """With `stats_grad`, the running statistics are differentiated too (`running` only)."""
    c, nd = in_shape[1], len(in_shape)
    options = dict(running=running, affine=affine, eps=eps)
    lay = channels_last(nd - 2) if nd in (3, 4) else IDENTITY
    inputs = (Tensor("input", in_shape, layout=lay),)
    params = _affine_params((c,), affine, affine)
    if running:  # module state: loaded into both modules, never differentiated there
        params += (
            Tensor("running_mean", (c,), differentiable=stats_grad, jax_name="mean"),
            Tensor("running_var", (c,), differentiable=stats_grad, draw=draw.uniform(0.5, 2.0), jax_name="var"),
        )
    torch_module, jax_module = _batch_norm_modules(c, eps, affine, running) if modules else (None, None)
    stats = "running statistics" + (", differentiated" if stats_grad else "") if running else "batch statistics"
    return Case(
        name=name, family="norm", inputs=inputs, params=params, out_layouts=(lay,),
        torch_fn=functools.partial(_batch_norm_torch, **options),
        torch_ref=functools.partial(_batch_norm_torch_ref, **options, stats_grad=stats_grad,
                                    view=(1, c) + (1,) * (nd - 2)),
        jax_fn=functools.partial(_batch_norm_jax, **options),
        # JAX: every axis but the trailing channels
        jax_ref=functools.partial(_batch_norm_jax_ref, **options, axes=tuple(range(nd - 1))),
        torch_module=torch_module, jax_module=jax_module, param_map=BATCH_NORM,
        description=f"x {in_shape} (NC*; N*C on JAX), {stats}, eps={eps}, affine={affine}",
    )


# -- shape buckets ----------------------------------------------------------------------------

# Buckets draw dims from SIZES, except the last dim each statistic reduces over. A variance
# over few elements is ill-conditioned: JAX's (Flax's) fast variance E[x^2] - E[x]^2 loses
# u * E[x^2] / var, which over 400k float32 rows of standard normals broke the forward's
# tolerance in 1 row in 370 over 3 elements, 1 in 6000 over 4 and 1 in 36000 over 5 (the
# fewest any declared case has). So a variance's last dim draws from VAR; a mean square is
# well-conditioned from two elements (over one, RMSNorm's gradient is all cancellation).
SIZES, VAR, MEAN_SQUARE = range(1, 4), range(5, 8), range(2, 8)


def _last_dims(last, first):
    """A bucket's trailing dims: `(last,)`, or `(first, last)` where the case's ranges have a `first`."""
    return (last,) if first is None else (first, last)


def _over_last_bucket(leading, batch, last, first=None, *, factory, name, **options):
    return factory(name, tuple(batch + i for i in range(leading)), _last_dims(last, first), **options)


def _over_last(factory, last, name, batch, shape, **options):
    """LayerNorm / RMSNorm: 0..2 batch dims, and a normalized shape of the declared rank whose
    last dim draws from `last`."""
    build = functools.partial(_over_last_bucket, factory=factory, name=name, **options)
    first = {"first": SIZES} if len(shape) == 2 else {}
    register(factory(name, batch, shape, **options), build, dict(leading=range(3), batch=SIZES, **first, last=last))


def _group_norm_bucket(n, groups, per_group, last, first=None, *, name, **options):
    return _group_norm_case(name, (n, groups * per_group, *_last_dims(last, first)), groups, **options)


def _group_norm(name, in_shape, groups, **options):
    """GroupNorm: batch, groups, channels per group (one in a depthwise case) and the declared
    number of spatial dims, the last from VAR."""
    per_group = (1,) if in_shape[1] == groups else range(1, 3)
    first = {"first": SIZES} if len(in_shape) == 4 else {}
    ranges = dict(n=range(1, 3), groups=SIZES, per_group=per_group, **first, last=VAR)
    build = functools.partial(_group_norm_bucket, name=name, **options)
    register(_group_norm_case(name, in_shape, groups, **options), build, ranges)


BATCH_NORM_DIMS = ("n", "c", "h", "w")


def _batch_norm_bucket(name, options, **dims):
    return _batch_norm_case(name, tuple(dims[k] for k in BATCH_NORM_DIMS if k in dims), **options)


def _batch_norm(name, in_shape, **options):
    """BatchNorm: every dim of the declared rank. Batch statistics reduce over all dims but the
    channels, so the last of those (w, or n for (N, C)) draws from VAR; running ones need not."""
    dims = BATCH_NORM_DIMS[: len(in_shape)]
    stat = None if options.get("running") else dims[-1] if len(dims) > 2 else "n"
    ranges = {k: VAR if k == stat else range(1, 5) if k == "c" else SIZES for k in dims}
    register(_batch_norm_case(name, in_shape, **options), functools.partial(_batch_norm_bucket, name, options), ranges)


_layer_norm = functools.partial(_over_last, _layer_norm_case, VAR)
_rms_norm = functools.partial(_over_last, _rms_norm_case, MEAN_SQUARE)

# A size-1 dim in every case; never a statistic over a single element.
_layer_norm("layer_norm", (3, 1), (7,))
_layer_norm("layer_norm-2d", (2,), (1, 5), eps=1e-6)
_layer_norm("layer_norm-nobias", (4, 1), (5,), bias=False)
_layer_norm("layer_norm-noaffine", (1, 2), (5,), affine=False)
_layer_norm("layer_norm-unbatched", (), (6,))
_rms_norm("rms_norm", (2, 1), (6,))
_rms_norm("rms_norm-2d", (3,), (4, 1), eps=1e-5)
_rms_norm("rms_norm-default-eps", (1, 3), (5,), eps=None)
_rms_norm("rms_norm-noweight", (2, 1), (4,), weight=False)
_group_norm("group_norm", (2, 6, 3, 1), 3)
_group_norm("group_norm-1d", (3, 4, 5), 2, eps=1e-6)
_group_norm("group_norm-depthwise", (1, 4, 2, 3), 4)
_group_norm("group_norm-noaffine", (2, 2, 1, 4), 1, affine=False)
_batch_norm("batch_norm", (3, 4, 2, 1))
_batch_norm("batch_norm-noaffine", (4, 3, 1, 2), affine=False)
_batch_norm("batch_norm-nc", (5, 1), modules=False)
_batch_norm("batch_norm-eval", (3, 4, 2, 1), running=True)
# Both layers give the running statistics their true gradients when asked, as flax.nnx.BatchNorm
# does under nnx.grad of its BatchStat (torch's F.batch_norm refuses them). The modules hold them
# as buffers and batch stats, so this case runs the functions alone.
_batch_norm("batch_norm-eval-stats", (2, 3, 1, 4), running=True, stats_grad=True, modules=False)
