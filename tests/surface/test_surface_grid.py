from __future__ import annotations

import numpy as np
import pytest
import torch

from landscape.errors import ConfigError
from landscape.surface.grid import GridSpec, axis_coordinates, parse_grid, parse_range


def test_parse_grid_strings():
    assert parse_grid("51x51") == (51, 51)
    assert parse_grid("41") == (41,)
    assert parse_grid("21x31x11") == (21, 31, 11)
    assert parse_grid(7) == (7,)


@pytest.mark.parametrize("bad", ["", "abc", "21x", "x21", "21x0", "1x2x3x4", "2.5x3", "-3"])
def test_bad_grid_strings_raise_one_line(bad):
    with pytest.raises(ConfigError) as e:
        parse_grid(bad)
    assert "\n" not in str(e.value)


def test_parse_ranges():
    assert parse_range("-1:1", 3) == ((-1.0, 1.0),) * 3
    assert parse_range("-1:1,-0.5:0.5", 2) == ((-1.0, 1.0), (-0.5, 0.5))
    assert parse_range("-0.5:1.5", 1) == ((-0.5, 1.5),)
    assert parse_range(2.0, 2) == ((-2.0, 2.0),) * 2


@pytest.mark.parametrize("bad", ["1:-1", "a:b", "-1:1,0:1,0:2", "1:1", ":", "-1:inf", "0"])
def test_bad_ranges_raise_one_line(bad):
    with pytest.raises(ConfigError) as e:
        parse_range(bad, 2)
    assert "\n" not in str(e.value)


def test_grid_dims_broadcast_and_conflicts():
    assert GridSpec.parse("41", "-1:1", dims=2).shape == (41, 41)
    assert GridSpec.parse("21x31x11").dims == 3
    with pytest.raises(ConfigError):
        GridSpec.parse("21x31", "-1:1", dims=3)
    with pytest.raises(ConfigError):
        GridSpec.parse("21", "-1:1", dims=4)


def test_coordinates_are_linspace_with_exact_zero_centre():
    c = axis_coordinates(-1.0, 1.0, 21)
    ref = torch.linspace(-1.0, 1.0, 21, dtype=torch.float64).numpy()
    assert c[10] == 0.0 and np.signbit(c[10]) == np.False_
    np.testing.assert_array_equal(np.delete(c, 10), np.delete(ref, 10))
    assert abs(ref[10]) < 1e-15  # linspace alone misses zero by rounding
    even = axis_coordinates(-1.0, 1.0, 20)
    assert 0.0 not in even  # even counts have no centre point
    asym = axis_coordinates(-0.5, 1.5, 5)
    np.testing.assert_array_equal(asym, [-0.5, 0.0, 0.5, 1.0, 1.5])


def test_points_are_row_major_over_axes():
    g = GridSpec((3, 2), ((-1, 1), (0, 1)))
    pts = g.points()
    a, b = g.coordinates()
    for i in range(3):
        for j in range(2):
            assert tuple(pts[i * 2 + j]) == (a[i], b[j])
    assert g.label == "3x2" and g.size == 6
    assert g.center_index() == (1, 0)
