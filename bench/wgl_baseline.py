"""A plain Wing & Gong search with Lowe's memoization: the peer lincheck is compared against.

This is the textbook algorithm the issue names as the reference point ("a plain Wing-Gong-Lowe
search in Python that drops reads of unknown outcome"): one linked list of call and return
events, linearize the first call whose model step succeeds and whose (linearized set, state)
pair is new, backtrack at a return. No partitioning, no look-ahead, no symmetry pruning: only
what every implementation of the algorithm does. Used by ``bench/lincheck_corpus.py`` so the
ratio comes from the same process, machine and moment. Not part of the product.
"""

from __future__ import annotations

from collections.abc import Sequence

from lincheck.history import Operation
from lincheck.models import INCONSISTENT, Model


def plain_wgl(operations: Sequence[Operation], model: Model) -> bool:
    """Whether the operations are linearizable under ``model`` (True/False, no deadline)."""
    # Reads of unknown outcome constrain nothing: dropped, as in the baseline.
    ops = [op for op in operations if not (op.status == "info" and model.read_only(op))]
    count = len(ops)
    completed = sum(1 for op in ops if op.status == "ok")
    end = max((op.call for op in ops), default=0) + 1
    # Events in time order: (time, is_return, op). An unknown outcome returns "at the end".
    events = sorted(
        [(op.call, 0, i) for i, op in enumerate(ops)]
        + [(op.ret if op.ret is not None else end + i, 1, i) for i, op in enumerate(ops)]
    )
    size = len(events) + 1  # node 0 is the list head
    nxt = list(range(1, size + 1))
    nxt[-1] = -1
    prv = list(range(-1, size - 1))
    is_return = [False] + [bool(e[1]) for e in events]
    op_of = [-1] + [e[2] for e in events]
    match = [0] * size  # call node -> its return node
    call_node = [0] * count
    for node in range(1, size):
        if is_return[node]:
            match[call_node[op_of[node]]] = node
        else:
            call_node[op_of[node]] = node

    def lift(node: int) -> None:
        for n in (node, match[node]):
            nxt[prv[n]] = nxt[n]
            if nxt[n] != -1:
                prv[nxt[n]] = prv[n]

    def unlift(node: int) -> None:
        for n in (match[node], node):
            nxt[prv[n]] = n
            if nxt[n] != -1:
                prv[nxt[n]] = n

    state = model.init()
    linearized = 0
    done = 0
    cache: set[tuple[int, object]] = set()
    stack: list[tuple[int, object]] = []
    node = nxt[0]
    while done < completed:
        if node == -1:
            return False
        if not is_return[node]:
            op = ops[op_of[node]]
            new_state = model.step(state, op)
            bit = 1 << op_of[node]
            if new_state is not INCONSISTENT and (linearized | bit, new_state) not in cache:
                cache.add((linearized | bit, new_state))
                stack.append((node, state))
                state = new_state
                linearized |= bit
                done += op.status == "ok"
                lift(node)
                node = nxt[0]
                continue
            node = nxt[node]
            continue
        # A return whose call could not be linearized: undo the latest choice.
        if not stack:
            return False
        node, state = stack.pop()
        op = ops[op_of[node]]
        linearized &= ~(1 << op_of[node])
        done -= op.status == "ok"
        unlift(node)
        node = nxt[node]
    return True
