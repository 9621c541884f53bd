"""token_groups: the one rule that cuts rows into forward passes under a token budget."""

from nlpipe.llm.batching import token_groups


def test_token_groups_respect_the_budget_in_the_given_order():
    costs = [40, 5, 38, 7, 90, 6, 200]
    order = sorted(range(len(costs)), key=costs.__getitem__)
    groups = token_groups(order, costs, 100)
    assert [row for group in groups for row in group] == order  # consecutive, nothing lost
    for group in groups:
        assert len(group) == 1 or len(group) * max(costs[r] for r in group) <= 100
    assert groups[-1] == [6]  # costlier than the budget: alone
    assert token_groups([], costs, 100) == []


def test_a_group_ends_only_where_the_next_row_would_break_the_budget():
    costs = [3, 9, 1, 4, 4, 12, 2, 2, 2, 7]
    for budget in (1, 5, 8, 12, 20, 40, 100):
        groups = token_groups(list(range(len(costs))), costs, budget)
        for group, following in zip(groups, groups[1:]):
            widened = group + following[:1]
            assert len(widened) * max(costs[r] for r in widened) > budget
