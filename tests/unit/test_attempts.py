import pytest

from refinery_lib.attempts import (
    AttemptPolicy,
    order_variants,
    variant_for_attempt,
    variant_stats,
)
from refinery_lib.history import History, new_event


def test_backoff_formula_and_cap():
    p = AttemptPolicy(max_attempts=5, backoff_base=2.0, backoff_max=10.0)
    assert [p.backoff(n) for n in range(1, 6)] == [2.0, 4.0, 8.0, 10.0, 10.0]
    with pytest.raises(ValueError):
        p.backoff(0)


def _attempt(pkg, variant, ok):
    return new_event(pkg, "1.0", "attempt", "", variant=variant, ok=ok)


def test_order_from_history(tmp_path):
    db = tmp_path / "h.db"
    History(db).record([
        _attempt("foo", "isolated", False), _attempt("foo", "isolated", False),
        _attempt("foo", "legacy", True), _attempt("bar", "isolated", True),
        new_event("foo", "1.0", "attempt", "", variant="legacy", ok=False,
                  dependency_missing=True),
        new_event("foo", "1.0", "attempt", "", variant="legacy", ok=False, system_missing=True),
    ], "r")
    stats = variant_stats(db, "foo")
    assert stats == {"isolated": (0, 2), "legacy": (1, 1)}
    configured = ["isolated", "no-isolation", "legacy"]
    # legacy worked (0.75), no-isolation untried (0.5), isolated only failed (0.17)
    assert order_variants(configured, stats) == ["legacy", "no-isolation", "isolated"]
    # a package never seen keeps the config order
    assert order_variants(configured, variant_stats(db, "never")) == configured
    assert order_variants(configured, {}, override=["legacy", "legacy"]) == ["legacy"]


def test_ties_keep_config_order():
    stats = {"a": (1, 1), "b": (1, 1)}
    assert order_variants(["b", "a", "c"], stats) == ["b", "a", "c"]


def test_variant_for_attempt_cycles():
    assert [variant_for_attempt(["a", "b"], n) for n in (1, 2, 3)] == ["a", "b", "a"]


def test_stats_without_history(tmp_path):
    assert variant_stats(tmp_path / "none.db", "foo") == {}
