"""Cases are data: every case, with its shape space, pickles (its functions are module-level,
their options bound by `functools.partial`), and the copy draws the same inputs."""

from __future__ import annotations

import pickle

import numpy as np

from crosscheck import registry


def _draws(case):
    return [t.draw(np.random.default_rng(0), (2, *t.shape)) for t in case.tensors]


def test_every_case_and_its_shape_buckets_pickle_and_draw_the_same_inputs():
    failed = []
    for case in registry.all_cases():
        for label, bucket in registry.buckets(case, 2):
            try:
                copy = pickle.loads(pickle.dumps(bucket))
            except Exception as e:  # a closure raises AttributeError or PicklingError, by Python version
                failed.append(f"{case.name} {label or '(declared shapes)'}: {type(e).__name__}: {e}")
                continue
            assert copy.name == bucket.name
            for a, b in zip(_draws(bucket), _draws(copy)):
                np.testing.assert_array_equal(a, b, err_msg=case.name)
    assert not failed, "cases that do not pickle:\n" + "\n".join(failed)
