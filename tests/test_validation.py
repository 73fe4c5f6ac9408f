from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import densitydp as dd
from densitydp._validation import (
    check_choice,
    check_epsilon,
    check_finite_array,
    check_int,
    check_open_unit,
    check_points,
    check_word_ids,
)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_check_epsilon_accepts_exactly_finite_positive(value):
    if math.isfinite(value) and value > 0:
        assert check_epsilon(value) == value
    else:
        with pytest.raises(ValueError, match=r"^`epsilon` must be a finite number > 0; got "):
            check_epsilon(value)


def test_message_shape():
    with pytest.raises(ValueError, match=r"^`epsilon` must be a finite number > 0; got -1\.$"):
        check_epsilon(-1)
    with pytest.raises(TypeError, match=r"^`epsilon` must be a real number; got str\.$"):
        check_epsilon("1")
    with pytest.raises(TypeError, match="got bool"):
        check_epsilon(True)
    with pytest.raises(ValueError, match=r"`beta` must be a number in the open interval \(0, 1\)"):
        check_open_unit(1.0, "beta")
    assert check_open_unit(np.float32(0.25), "beta") == 0.25


@given(st.integers(-5, 15))
def test_check_int_bounds(value):
    if 0 <= value <= 10:
        assert check_int(np.int32(value), "k", minimum=0, maximum=10) == value
    else:
        with pytest.raises(ValueError, match=rf"`k` must be an int in \[0, 10\]; got {value}\."):
            check_int(value, "k", minimum=0, maximum=10)


def test_check_int_types():
    with pytest.raises(TypeError, match="`k` must be an int; got float"):
        check_int(2.0, "k")
    with pytest.raises(ValueError, match="`k` must be an int >= 1; got 0"):
        check_int(0, "k", minimum=1)


def test_check_choice():
    assert check_choice("a", "mode", ("a", "b")) == "a"
    with pytest.raises(ValueError, match="`mode` must be one of 'a', 'b'; got 'c'"):
        check_choice("c", "mode", ("a", "b"))


def test_check_word_ids():
    assert check_word_ids([3, 0], 4).tolist() == [3, 0]
    assert check_word_ids(np.int16(2), 4).shape == ()
    assert check_word_ids([], 4).shape == (0,)
    with pytest.raises(ValueError, match=r"`word_ids` must be in \[0, 3\] .* got 4"):
        check_word_ids([1, 4], 4)
    with pytest.raises(ValueError, match="got -1"):
        check_word_ids([-1], 4)
    with pytest.raises(TypeError, match="got dtype float64"):
        check_word_ids([1.0], 4)
    with pytest.raises(TypeError, match="got dtype bool"):
        check_word_ids([True], 4)
    # an unsigned id beyond int64 is reported as given (it wrapped to a negative number)
    with pytest.raises(ValueError, match="got 9223372036854775808"):
        check_word_ids(np.array([1, 2**63], dtype=np.uint64), 4)
    assert check_word_ids(np.array([3], dtype=np.uint64), 4).tolist() == [3]


def test_check_arrays():
    original = np.array([[1, 2], [3, 4]])
    result = check_points(original, 2)
    assert result.dtype == np.float64 and original.dtype.kind == "i"
    assert check_points([1.0, 2.0], 2).shape == (1, 2)
    with pytest.raises(ValueError, match=r"must be finite; got inf at index \(1, 0\)"):
        check_finite_array([[0, 0], [np.inf, 0]], "points")
    with pytest.raises(ValueError, match="must be a 1-D array; got shape"):
        check_finite_array([[0]], "x", ndim=1)
    with pytest.raises(TypeError, match="`x` must hold real numbers .*got dtype <U1"):
        check_finite_array(["a"], "x")


def test_points_of_a_coercible_dtype_are_refused():
    space = dd.synthetic_space(n_words=20, dim=2, n_clusters=2, rng=0)
    with pytest.raises(TypeError, match="`points` must hold real numbers .*complex128"):
        space.nearest(np.array([[1 + 1j, 0j]]))
    with pytest.raises(TypeError, match="`points` must be a plain array .*masked array"):
        space.nearest(np.ma.masked_array([[1.0, 2.0]], mask=[[True, False]]))


# ---- Issue 12 (review): integers and fractions beyond the float range ----------------------

HUGE = (10**400, -(10**400))


@pytest.mark.parametrize("value", HUGE, ids=["1e400", "-1e400"])
def test_check_number_huge_int_is_a_value_error_naming_the_argument(value):
    sign = "-" if value < 0 else ""
    expected = rf"^`epsilon` must be a finite number > 0; got {sign}1\.000e\+400 \(an int of 401"
    with pytest.raises(ValueError, match=expected):
        check_epsilon(value)
    with pytest.raises(ValueError, match=r"^`beta` must be a finite number > 0; got "):
        check_open_unit(value, "beta")


def test_check_number_huge_fraction_and_numpy_ints():
    from fractions import Fraction

    with pytest.raises(ValueError, match=r"^`scale` must be a finite number > 0; got Fraction"):
        check_epsilon(Fraction(10**400, 3), "scale")
    assert check_epsilon(np.int64(2**62)) == float(2**62)
    assert check_epsilon(10**308) == 1e308  # the largest ints that fit are accepted


@pytest.mark.parametrize("value", HUGE, ids=["1e400", "-1e400"])
@pytest.mark.parametrize(
    "build",
    [
        lambda space, v: dd.TruncatedExponential(space, epsilon=v),
        lambda space, v: dd.MultivariateLaplace(space, epsilon=v),
        lambda space, v: dd.TruncatedGumbel(space, scale=v),
        lambda space, v: dd.TruncatedExponential(space, epsilon=1.0, beta=v),
    ],
    ids=["exponential-epsilon", "laplace-epsilon", "gumbel-scale", "tem-beta"],
)
def test_public_parameters_refuse_huge_ints_with_their_name(build, value):
    space = dd.synthetic_space(n_words=50, dim=3, n_clusters=2, rng=0)
    with pytest.raises(ValueError, match=r"^`(epsilon|scale|beta)` must be a finite number"):
        build(space, value)
