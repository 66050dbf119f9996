"""Gate-level stimulus images (:mod:`lcp.synth.stimulus`)."""

import numpy as np

from lcp.synth.stimulus import natural_images


def test_natural_images_are_photographs_on_the_pixel_grid():
    x = natural_images((3, 32, 32), 4, seed=1)
    assert x.shape == (4, 3, 32, 32)
    k = x * 255.0
    assert np.allclose(k, np.round(k)) and k.min() >= 0 and k.max() <= 255
    # natural images: neighbouring pixels are close (uniform noise differs by ~85 on average)
    assert np.abs(np.diff(np.round(k), axis=-1)).mean() < 30
    assert len({img.tobytes() for img in x}) == 4              # four different crops
    assert np.array_equal(x, natural_images((3, 32, 32), 4, seed=1))
    g = natural_images((1, 16, 16), 2)
    assert g.shape == (2, 1, 16, 16)


def test_natural_images_only_for_image_layouts():
    assert natural_images((4, 8, 8), 1) is None              # not 1 or 3 channels
    assert natural_images((64,), 1) is None                  # a vector
    assert natural_images((3, 1000, 1000), 1) is None        # larger than the photographs
