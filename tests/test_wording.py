"""kerasnas.wording: counts in messages."""

from kerasnas.wording import count


def test_count_agrees_in_number():
    assert count(1, "format") == "1 format"
    assert count(5, "format") == "5 formats"
    assert count(0, "trial") == "0 trials"
    assert count(1, "index", "indices") == "1 index"
    assert count(3, "search", "searches") == "3 searches"
    assert count(1.0, "epoch", spec=".3g") == "1 epoch"
    assert count(1.5, "epoch", spec=".3g") == "1.5 epochs"
    assert count(0.6, "step", spec=".0f") == "1 step"  # as printed
    assert count(12345, "param", spec=",") == "12,345 params"
