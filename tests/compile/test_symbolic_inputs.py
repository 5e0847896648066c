"""Call-time binding of symbolic sizes (issue 12, findings 17 and 22).

A dimension `a*n + b` of one symbol bound nowhere else is solved from the array's length; a
size that goes negative once the symbols are bound names the node and the inputs; a plain
`sympy.Symbol("n")` in a shape is the same dimension as the str "n".
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy

import graphc as gc

n = sympy.Symbol("n", integer=True, positive=True)


def test_twice_n_is_solved_from_the_length():
    g = gc.Graph()
    x = g.input("x", shape=(2 * n,))
    xv = np.arange(6.0)
    np.testing.assert_allclose((x * 2.0).eval({x: xv}), 2 * xv)
    # the halves: x[:n] and x[n:], with n solved as 3
    f = gc.function([x], [x[:n].sum(), gc.grad((x[n:] ** 2).sum(), x)])
    head, gx = f(xv)
    assert head == 0 + 1 + 2
    np.testing.assert_allclose(gx, [0, 0, 0, 6, 8, 10])


def test_n_plus_one_is_solved_from_the_length():
    g = gc.Graph()
    x = g.input("x", shape=(n + 1,))
    xv = np.array([1.0, 2.0, 4.0, 8.0])
    np.testing.assert_allclose((x[1:] - x[:-1]).eval({x: xv}), np.diff(xv))
    with pytest.raises(gc.InputError, match=r"'x'.*n \+ 1.*n = 0.*positive integer"):
        (x * 1.0).eval({x: np.ones(1)})


def test_two_n_by_n_binds_n_from_the_plain_axis_and_checks_the_other():
    g = gc.Graph()
    x = g.input("x", shape=(2 * n, n))
    xv = np.arange(18.0).reshape(6, 3)
    np.testing.assert_allclose(x.sum(axis=0).eval({x: xv}), xv.sum(axis=0))
    with pytest.raises(gc.InputError, match=r"'x'.*axis 0 should be 2\*n = 8.*got 6"):
        x.sum().eval({x: np.ones((6, 4))})


def test_an_odd_length_for_twice_n_names_input_dimension_and_size():
    g = gc.Graph()
    x = g.input("x", shape=(2 * n,))
    with pytest.raises(gc.InputError) as e:
        (x * 1.0).eval({x: np.ones(5)})
    msg = str(e.value)
    assert "'x'" in msg and "2*n" in msg and "length 5" in msg and "5/2" in msg


def test_a_symbol_bound_by_another_input_checks_the_expression():
    g = gc.Graph()
    x = g.input("x", shape=(2 * n,))
    y = g.input("y", shape=(n,))
    assert gc.eval(x.sum() + y.sum(), {x: np.ones(6), y: np.ones(3)}) == 9.0
    with pytest.raises(gc.InputError, match=r"'x'.*2\*n = 8.*bound by input 'y'.*got 6"):
        gc.eval(x.sum() + y.sum(), {x: np.ones(6), y: np.ones(4)})


def test_undeterminable_symbols_are_named():
    m = sympy.Symbol("m", integer=True, positive=True)
    g = gc.Graph()
    x = g.input("x", shape=(n * m,))
    with pytest.raises(gc.InputError, match=r"'x'.*m, n cannot be determined"):
        (x * 1.0).eval({x: np.ones(6)})
    g = gc.Graph()
    y = g.input("y", shape=(n ** 2,))
    with pytest.raises(gc.InputError, match=r"'y'.*symbol n cannot be determined"):
        (y * 1.0).eval({y: np.ones(4)})


def test_graph_input_with_a_dimension_expression_through_graph_input():
    g = gc.Graph()
    x = g.input("x", shape=(sympy.Symbol("k") * 3 + 1, 2))
    xv = np.ones((7, 2))
    assert gc.function([x], x.sum())(xv) == 14.0


def test_a_size_that_goes_negative_names_node_and_inputs():
    g = gc.Graph()
    x = g.input("x", shape=("n",))
    tail = x[5:]
    gx = gc.grad((tail * tail).sum(), x)
    np.testing.assert_allclose(gx.eval({x: np.arange(7.0)}), [0, 0, 0, 0, 0, 10, 12])
    with pytest.raises(gc.InputError) as e:
        gx.eval({x: np.ones(3)})
    msg = str(e.value)
    assert tail.name in msg and "n - 5" in msg and "n >= 5" in msg and "n is 3" in msg
    assert "input 'x'" in msg
    with pytest.raises(gc.InputError, match="n >= 5; n is 3"):
        tail.sum().eval({x: np.ones(3)})
    assert tail.sum().eval({x: np.ones(5)}) == 0.0  # n = 5: an empty tail is fine


def test_plain_sympy_symbol_and_str_are_one_dimension():
    g = gc.Graph()
    a = g.input("a", shape=(sympy.Symbol("n"),))
    b = g.input("b", shape=("n",))
    c = g.input("c", shape=(2 * sympy.Symbol("n", real=True),))
    assert a.shape == b.shape == (gc.ir.types.symbol("n"),)
    out = a + b
    np.testing.assert_allclose(out.eval({a: np.ones(3), b: np.arange(3.0)}), [1, 2, 3])
    both = gc.concatenate([a, b])
    assert gc.ir.types.dim_eq(both.shape[0], c.shape[0])
    np.testing.assert_allclose((both + c).eval({a: np.ones(2), b: np.ones(2), c: np.ones(4)}),
                               2 * np.ones(4))
    with pytest.raises(gc.InputError, match="bound by input 'a'"):
        out.eval({a: np.ones(3), b: np.ones(4)})
