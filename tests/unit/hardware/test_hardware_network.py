"""LossyNetwork: duplicates and reorders at the requested rates, never drops, seeded."""

from __future__ import annotations

from collections import Counter

import pytest

from hardware.simulators import LossyNetwork

N = 4000


def payloads(n: int = N) -> list[bytes]:
    return [f'{{"seq":{i}}}'.encode() for i in range(n)]


def test_perfect_network_delivers_in_order() -> None:
    sent = payloads(200)
    delivery = LossyNetwork(seed=1, duplicate_rate=0.0, reorder_rate=0.0).deliver(sent)
    assert list(delivery.messages) == sent
    assert (delivery.duplicates, delivery.reorders) == (0, 0)


def test_nothing_is_dropped_and_copies_are_exact() -> None:
    sent = payloads()
    delivery = LossyNetwork(seed=2, duplicate_rate=0.2, reorder_rate=0.3).deliver(sent)
    counts = Counter(delivery.messages)
    assert set(counts) == set(sent)
    assert all(1 <= c <= 2 for c in counts.values())
    assert len(delivery.messages) == N + delivery.duplicates
    assert sum(c - 1 for c in counts.values()) == delivery.duplicates


@pytest.mark.parametrize(
    ("dup", "reo"), [(0.05, 0.1), (0.2, 0.3), (0.5, 0.0), (0.0, 0.5), (0.1, 0.8)]
)
def test_rates_are_roughly_the_requested_ones(dup: float, reo: float) -> None:
    sent = payloads()
    delivery = LossyNetwork(seed=3, duplicate_rate=dup, reorder_rate=reo).deliver(sent)
    assert delivery.duplicates / N == pytest.approx(dup, abs=0.03)
    # Binomial noise on ~4,000 draws is ~0.008; a few held at the very end are not counted.
    assert delivery.reorders / len(delivery.messages) == pytest.approx(reo, abs=0.025)


def test_reorder_count_matches_the_delivered_order() -> None:
    sent = payloads(500)
    index = {p: i for i, p in enumerate(sent)}
    delivery = LossyNetwork(seed=4, duplicate_rate=0.1, reorder_rate=0.2).deliver(sent)
    overtaken = 0
    for position, message in enumerate(delivery.messages):
        if any(index[m] > index[message] for m in delivery.messages[:position]):
            overtaken += 1
    assert overtaken == delivery.reorders > 0


@pytest.mark.parametrize("max_delay", [1, 2, 5])
def test_each_message_is_overtaken_by_at_most_max_delay(max_delay: int) -> None:
    sent = payloads(1000)
    index = {p: i for i, p in enumerate(sent)}
    delivery = LossyNetwork(
        seed=5, duplicate_rate=0.1, reorder_rate=0.4, max_delay_positions=max_delay
    ).deliver(sent)
    worst = 0
    for position, message in enumerate(delivery.messages):
        later_sent = {m for m in delivery.messages[:position] if index[m] > index[message]}
        worst = max(worst, len(later_sent))
    assert worst == max_delay


def test_same_seed_same_delivery_different_seed_differs() -> None:
    sent = payloads(500)

    def run(seed: int) -> tuple[tuple[bytes, ...], int, int]:
        d = LossyNetwork(seed=seed, duplicate_rate=0.1, reorder_rate=0.2).deliver(sent)
        return d.messages, d.duplicates, d.reorders

    assert run(7) == run(7)
    assert run(7) != run(8)


@pytest.mark.parametrize(("dup", "reo", "delay"), [(-0.1, 0.0, 3), (0.0, 1.5, 3), (0.1, 0.1, 0)])
def test_bad_configuration_is_refused(dup: float, reo: float, delay: int) -> None:
    with pytest.raises(ValueError):
        LossyNetwork(seed=0, duplicate_rate=dup, reorder_rate=reo, max_delay_positions=delay)
