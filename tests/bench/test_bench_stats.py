"""The statistics behind every figure: nearest-rank percentiles, trial summaries, ratios."""

import pytest

from bench.stats import percentile, rate, ratio, summarize


def test_percentile_is_the_nearest_rank_sample():
    samples = [float(value) for value in range(1, 11)]  # 1..10
    assert percentile(samples, 50) == 5.0
    assert percentile(samples, 90) == 9.0
    assert percentile(samples, 91) == 10.0


def test_percentile_99_of_fewer_than_100_samples_is_the_largest():
    samples = [3.0, 1.0, 2.0, 40.0]
    assert percentile(samples, 99) == 40.0


def test_percentile_does_not_depend_on_the_order_of_samples():
    assert percentile([5.0, 1.0, 4.0, 2.0, 3.0], 50) == 3.0


def test_percentile_of_a_single_sample_is_that_sample():
    assert percentile([7.5], 1) == 7.5
    assert percentile([7.5], 100) == 7.5


@pytest.mark.parametrize("p", [0, -1, 101])
def test_percentile_refuses_a_p_outside_0_to_100(p):
    with pytest.raises(ValueError):
        percentile([1.0, 2.0], p)


def test_percentile_of_no_samples_is_an_error():
    with pytest.raises(ValueError):
        percentile([], 50)


def test_summary_gives_median_min_and_max_of_the_trials():
    summary = summarize([3.0, 1.0, 2.0])
    assert (summary.median, summary.min, summary.max, summary.trials) == (2.0, 1.0, 3.0, 3)


def test_summary_median_of_an_even_number_of_trials_is_the_mean_of_the_middle_two():
    assert summarize([1.0, 2.0, 4.0, 10.0]).median == 3.0


def test_ratio_is_missing_without_a_reference():
    assert ratio(2.0, 4.0) == 0.5
    assert ratio(2.0, None) is None
    assert ratio(None, 4.0) is None
    assert ratio(2.0, 0.0) is None


def test_rate_needs_time_to_pass():
    assert rate(10, 2.0) == 5.0
    assert rate(10, 0.0) is None
