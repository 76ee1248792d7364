"""The order a round's workers take users in: largest first, the smallest between the large ones."""

from __future__ import annotations

from types import SimpleNamespace

from recovery_lib.recovery import schedule


def users(**megabytes: int) -> list[schedule.Group]:
    """One group per user, each of one candidate weighing that many MB, in the order given."""
    return [(user, [SimpleNamespace(payload_size_bytes=mb * 1_000_000)]) for user, mb in megabytes.items()]


def names(groups: list[schedule.Group]) -> list[str]:
    return [user for user, _ in groups]


def test_users_of_similar_weight_go_largest_first():
    assert names(schedule.order(users(a=3, b=5, c=4, d=1))) == ["b", "c", "a", "d"]


def test_the_smallest_users_go_between_the_large_ones_and_the_rest_follow_largest_first():
    # Mean 26 MB: a and b weigh more than twice that. Half of the six others go between them,
    # smallest first (d, f after a; e, g after b), then the rest largest first (h, c).
    ordered = schedule.order(users(a=100, b=90, c=5, d=1, e=3, f=2, g=4, h=6))
    assert names(ordered) == ["a", "d", "f", "b", "e", "g", "h", "c"]


def test_every_large_user_is_out_in_the_first_half_and_small_ones_end_the_round():
    # Four 16 MB exports among twenty users, as in make bench #1.
    groups = users(**{f"large{n}": 16 for n in range(4)}, **{f"small{n}": 3 for n in range(16)})
    ordered = names(schedule.order(groups))
    assert [ordered.index(f"large{n}") for n in range(4)] == [0, 3, 6, 9]
    assert all(user.startswith("small") for user in ordered[10:])


def test_each_user_is_handed_out_once_with_their_ingestions_untouched():
    groups = users(a=50, b=1, c=2, d=40, e=1, f=3, g=1)
    ordered = schedule.order(groups)
    assert sorted(names(ordered)) == sorted(names(groups))
    assert {user: group for user, group in ordered} == dict(groups)


def test_one_user_or_none():
    assert names(schedule.order(users(a=7))) == ["a"]
    assert schedule.order([]) == []


def test_a_user_of_several_payloads_weighs_their_sum():
    many_small = ("many", [SimpleNamespace(payload_size_bytes=10_000_000) for _ in range(10)])
    assert schedule.weight(many_small) == 100_000_000
    ordered = names(schedule.order([*users(x=1, y=2, z=3, w=1), many_small]))
    assert ordered[0] == "many"
