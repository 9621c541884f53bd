"""Rows cut into forward passes under a token budget: the one rule that bounds every pass."""


def token_groups(rows: list[int], costs: list[int], budget: int) -> list[list[int]]:
    """`rows` cut, in order, into consecutive groups whose size (rows x costliest row) stays
    within `budget` tokens; a row costlier than the budget runs alone. The one rule that bounds
    every forward pass: generation, scoring (each pass of packed continuations), reading, and
    training's feature extraction and batches."""
    groups, current, costliest = [], [], 0
    for row in rows:
        if current and max(costliest, costs[row]) * (len(current) + 1) > budget:
            groups.append(current)
            current, costliest = [], 0
        current.append(row)
        costliest = max(costliest, costs[row])
    return groups + [current] if current else groups
