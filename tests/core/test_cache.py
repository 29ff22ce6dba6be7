"""core.cache.TTLCache: values expire after their TTL, a full cache starts over, forgetting works."""

from __future__ import annotations

from core.cache import TTLCache


def _cache(size: int = 3) -> tuple[TTLCache, list[float]]:
    clock = [100.0]
    return TTLCache(seconds=30.0, size=size, clock=lambda: clock[0]), clock


def test_a_value_is_returned_until_its_ttl_runs_out():
    cache, clock = _cache()
    cache.set("k", "v")

    clock[0] += 29.999
    assert cache.get("k") == "v"
    assert "k" in cache
    clock[0] += 0.001
    assert cache.get("k") is None
    assert "k" not in cache


def test_setting_again_restarts_the_ttl():
    cache, clock = _cache()
    cache.set("k", "old")
    clock[0] += 20
    cache.set("k", "new")
    clock[0] += 20

    assert cache.get("k") == "new"


def test_a_full_cache_is_emptied_before_one_more_value():
    cache, _ = _cache(size=2)
    cache.set("a", 1)
    cache.set("b", 2)

    cache.set("c", 3)

    assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == (None, None, 3, 1)


def test_pop_and_clear_forget():
    cache, _ = _cache()
    cache.set("a", 1)
    cache.set("b", 2)

    cache.pop("a")
    cache.pop("never-set")
    assert (cache.get("a"), cache.get("b")) == (None, 2)
    cache.clear()
    assert (cache.get("b"), len(cache)) == (None, 0)


def test_an_empty_value_is_a_hit():
    cache, _ = _cache()
    cache.set("merchant", {})

    assert cache.get("merchant") == {}
