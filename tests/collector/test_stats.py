"""Summary statistics against plain torch: batched reductions, one host transfer."""

from __future__ import annotations

import math

import pytest
import torch

from collector import stats

KEYS = ("numel", "norm", "mean", "std", "min", "max", "abs_max", "zero_frac", "nonfinite")


def one(x: torch.Tensor, *, negate: bool = False) -> dict[str, float | int]:
    [host] = stats.to_host([stats.reduce([x], negate=negate)])
    [row] = host.rows()
    return row


def expected(x: torch.Tensor) -> dict[str, float | int]:
    """The same statistics from plain torch, one at a time (what stats avoids doing)."""
    x = x.detach().float()
    return {
        "numel": x.numel(),
        "norm": float(torch.linalg.vector_norm(x)),
        "mean": float(x.mean()),
        "std": float(torch.std(x)),
        "min": float(x.min()),
        "max": float(x.max()),
        "abs_max": float(x.abs().max()),
        "zero_frac": float((x == 0).sum()) / x.numel(),
        "nonfinite": int((~torch.isfinite(x)).sum()),
    }


def assert_close(got: dict[str, float | int], want: dict[str, float | int]) -> None:
    assert set(got) == set(KEYS)
    for key in KEYS:
        g, w = got[key], want[key]
        if isinstance(w, float) and math.isnan(w):
            assert math.isnan(g), key
        elif key in ("numel", "nonfinite", "min", "max", "abs_max", "zero_frac"):
            assert g == w, key  # exact: no arithmetic between the tensor and the value
        else:
            assert g == pytest.approx(w, rel=2e-5, abs=1e-6), key


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


def test_random_float32_matches_torch(gen: torch.Generator) -> None:
    x = torch.randn(64, 33, generator=gen) * 0.3 + 0.05
    x[::5, ::3] = 0.0
    assert_close(one(x), expected(x))
    assert 0 < one(x)["zero_frac"] < 1


def test_non_contiguous_tensor_matches_torch(gen: torch.Generator) -> None:
    x = torch.randn(40, 30, generator=gen).t()[::2]
    assert not x.is_contiguous()
    assert_close(one(x), expected(x))


def test_float64_tensor_matches_torch(gen: torch.Generator) -> None:
    x = torch.randn(500, generator=gen, dtype=torch.float64)
    got = one(x)
    assert got["norm"] == pytest.approx(float(torch.linalg.vector_norm(x)), rel=1e-12)
    assert got["std"] == pytest.approx(float(x.std()), rel=1e-10)
    assert got["mean"] == pytest.approx(float(x.mean()), rel=1e-10, abs=1e-14)


def test_all_zero_tensor() -> None:
    got = one(torch.zeros(3, 4))
    assert got == {
        "numel": 12, "norm": 0.0, "mean": 0.0, "std": 0.0, "min": 0.0, "max": 0.0,
        "abs_max": 0.0, "zero_frac": 1.0, "nonfinite": 0,
    }  # fmt: skip


def test_nan_is_counted_exactly_and_makes_the_moments_nan(gen: torch.Generator) -> None:
    x = torch.randn(100, generator=gen)
    x[[3, 50]] = math.nan
    x[7] = 0.0
    got = one(x)
    assert got["nonfinite"] == 2
    assert math.isnan(got["mean"]) and math.isnan(got["std"]) and math.isnan(got["norm"])
    assert got["zero_frac"] == 0.01
    assert got["numel"] == 100


def test_positive_inf_is_counted_exactly_and_reported_as_inf(gen: torch.Generator) -> None:
    x = torch.randn(100, generator=gen)
    x[10] = math.inf
    got = one(x)
    want = expected(x)
    assert got["nonfinite"] == want["nonfinite"] == 1
    assert got["mean"] == math.inf == want["mean"]
    assert got["max"] == math.inf and got["abs_max"] == math.inf and got["norm"] == math.inf
    assert got["min"] == want["min"]
    assert math.isnan(got["std"]) and math.isnan(want["std"])


def test_negative_inf_and_nan_together(gen: torch.Generator) -> None:
    x = torch.randn(50, generator=gen)
    x[0], x[1], x[2] = -math.inf, math.nan, math.inf
    got = one(x)
    assert got["nonfinite"] == 3
    assert math.isnan(got["mean"])


def test_single_element_tensor_has_std_zero() -> None:
    got = one(torch.tensor([-2.5]))
    assert got["std"] == 0.0
    assert (got["mean"], got["norm"], got["min"], got["max"], got["abs_max"]) == (
        -2.5, 2.5, -2.5, -2.5, 2.5,
    )  # fmt: skip
    assert one(torch.tensor(3.0))["numel"] == 1  # a 0-d tensor too


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_tensors_match_torch_in_float32(
    gen: torch.Generator, dtype: torch.dtype
) -> None:
    x = (torch.randn(37, 11, generator=gen) * 2).to(dtype)
    assert_close(one(x), expected(x))


def test_half_tensor_whose_half_sum_would_overflow() -> None:
    x = torch.full((100,), 60_000.0, dtype=torch.float16)  # half max is 65504
    got = one(x)
    assert got["mean"] == 60_000.0
    assert got["norm"] == pytest.approx(600_000.0, rel=1e-6)
    assert got["nonfinite"] == 0


def test_integer_and_bool_tensors_are_summarised_as_floats() -> None:
    got = one(torch.arange(10))
    assert (got["mean"], got["min"], got["max"], got["zero_frac"]) == (4.5, 0.0, 9.0, 0.1)
    assert one(torch.tensor([True, False, True, True]))["mean"] == 0.75


@pytest.mark.parametrize("scale", [1e25, 1e36])
def test_huge_finite_values_report_a_finite_correct_norm(
    gen: torch.Generator, scale: float
) -> None:
    # Squares overflow float32 (1e25**2 = 1e50); at 1e36 the plain sum overflows too.
    x = (torch.rand(1000, generator=gen) + 1.0) * scale
    assert torch.isfinite(x).all()
    assert not torch.isfinite(torch.dot(x, x))
    exact = x.double()
    got = one(x)
    assert got["nonfinite"] == 0
    assert math.isfinite(got["norm"])
    assert got["norm"] == pytest.approx(float(torch.linalg.vector_norm(exact)), rel=1e-9)
    assert got["mean"] == pytest.approx(float(exact.mean()), rel=1e-9)
    assert got["std"] == pytest.approx(float(exact.std()), rel=1e-6)
    negated = one(x, negate=True)
    assert negated["norm"] == got["norm"]
    assert negated["mean"] == pytest.approx(-got["mean"], rel=1e-12)


def test_tiny_finite_values_report_a_non_zero_norm() -> None:
    x = torch.full((10,), 1e-25)
    got = one(x)
    assert got["zero_frac"] == 0.0
    norm = float(torch.linalg.vector_norm(x.double()))
    assert got["norm"] == pytest.approx(norm, rel=1e-6, abs=0.0)


def test_empty_tensor_reports_numel_zero_instead_of_raising() -> None:
    got = one(torch.empty(0, 3))
    assert got["numel"] == 0
    assert math.isnan(got["mean"])


def test_negate_reports_the_statistics_of_minus_x(gen: torch.Generator) -> None:
    x = torch.randn(20, 7, generator=gen) + 0.5
    x[0, 0] = 0.0
    got = one(x, negate=True)
    assert_close(got, expected(-x))
    assert got["mean"] < 0 and got["min"] == -float(x.max()) and got["max"] == -float(x.min())


def test_negate_with_non_finite_values(gen: torch.Generator) -> None:
    x = torch.randn(10, generator=gen)
    x[4] = math.inf
    got = one(x, negate=True)
    assert got["min"] == -math.inf and got["mean"] == -math.inf and got["nonfinite"] == 1


def test_several_pending_stats_go_to_the_host_together(gen: torch.Generator) -> None:
    a = torch.randn(5, 5, generator=gen)
    b = torch.zeros(7)
    c = torch.randn(3, generator=gen).half()
    d = torch.randn(11, generator=gen)
    pending = [
        stats.reduce([a, b]),
        stats.reduce([]),
        stats.reduce([c]),
        stats.reduce([d], negate=True),
    ]
    rows = [host.rows() for host in stats.to_host(pending)]
    assert [len(r) for r in rows] == [2, 0, 1, 1]
    assert_close(rows[0][0], expected(a))
    assert_close(rows[0][1], expected(b))
    assert_close(rows[2][0], expected(c))
    assert_close(rows[3][0], expected(-d))


def test_nothing_pending_gives_empty_results() -> None:
    assert stats.to_host([]) == []
    assert [h.rows() for h in stats.to_host([stats.reduce([]), stats.reduce([])])] == [[], []]


def test_reduce_leaves_its_inputs_untouched(gen: torch.Generator) -> None:
    x = torch.randn(9, generator=gen, requires_grad=True)
    before = x.detach().clone()
    stats.to_host([stats.reduce([x], negate=True)])
    assert torch.equal(x.detach(), before)
    assert x.grad is None


def test_columns_hold_one_value_per_tensor_in_order(gen: torch.Generator) -> None:
    xs = [torch.randn(4, 3, generator=gen), torch.zeros(0), torch.randn(6, generator=gen)]
    [host] = stats.to_host([stats.reduce(xs)])
    assert list(host.columns) == list(KEYS) and len(host) == 3
    rows = host.rows()
    assert rows[1]["numel"] == 0 and math.isnan(rows[1]["mean"]) and rows[1]["nonfinite"] == 0
    assert_close(rows[0], expected(xs[0]))
    assert_close(rows[2], expected(xs[2]))
    both = stats.concat([host, host])
    assert both.rows()[3] == rows[0]
