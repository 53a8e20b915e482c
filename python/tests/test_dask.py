"""Dask arrays over the threaded scheduler: bit-identical to one predict."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import bits, rows

import densebatch


def test_map_blocks_over_row_chunks_is_bit_identical(digits_dir):
    import dask.array as da
    from densebatch.dask import predict_array

    model = densebatch.load(digits_dir, threads=1)
    x = rows(1000, 64, seed=4)
    lazy = predict_array(model, da.from_array(x, chunks=(137, 32)))
    y = lazy.compute(scheduler="threads", num_workers=2)
    assert np.array_equal(bits(y), bits(model.predict(x)))
    with pytest.raises(ValueError, match="64"):
        predict_array(model, da.from_array(rows(10, 63), chunks=(5, 63)))
