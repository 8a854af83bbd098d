import pytest

from storefront.errors import PaymentError
from storefront.payments import SimulatedProcessor


def test_authorize_is_idempotent_on_its_key() -> None:
    processor = SimulatedProcessor(seed=1, decline_rate=0.0)
    first = processor.authorize(token="tok", amount_minor=500, currency="GBP",
                                idempotency_key="k1")
    again = processor.authorize(token="tok", amount_minor=500, currency="GBP",
                                idempotency_key="k1")
    assert first == again and first.status == "authorized"


def test_capture_once_and_never_above_the_hold() -> None:
    processor = SimulatedProcessor(seed=1, decline_rate=0.0)
    auth = processor.authorize(token="tok", amount_minor=500, currency="GBP",
                               idempotency_key="a")
    with pytest.raises(PaymentError):
        processor.capture(authorization_id=auth.authorization_id, amount_minor=501,
                          idempotency_key="c0")
    cap = processor.capture(authorization_id=auth.authorization_id, amount_minor=400,
                            idempotency_key="c1")
    assert processor.capture(authorization_id=auth.authorization_id, amount_minor=400,
                             idempotency_key="c1") == cap
    with pytest.raises(PaymentError):
        processor.capture(authorization_id=auth.authorization_id, amount_minor=100,
                          idempotency_key="c2")
    assert processor.captured_total() == 400


def test_decline_rate_is_respected_and_seeded() -> None:
    def declines(seed: int) -> list[bool]:
        p = SimulatedProcessor(seed=seed, decline_rate=0.2)
        return [p.authorize(token=f"tok_{i}", amount_minor=1, currency="GBP",
                            idempotency_key=f"k{i}").status == "declined" for i in range(2000)]

    assert declines(3) == declines(3)
    assert 0.17 < sum(declines(3)) / 2000 < 0.23


def test_declined_hold_cannot_be_captured() -> None:
    processor = SimulatedProcessor(seed=1, decline_rate=1.0)
    auth = processor.authorize(token="t", amount_minor=10, currency="GBP", idempotency_key="a")
    assert auth.status == "declined" and auth.decline_reason
    with pytest.raises(PaymentError):
        processor.capture(authorization_id=auth.authorization_id, amount_minor=10,
                          idempotency_key="c")


def test_bad_arguments_refused() -> None:
    with pytest.raises(ValueError):
        SimulatedProcessor(seed=1, decline_rate=1.5)
    processor = SimulatedProcessor(seed=1, decline_rate=0.0)
    with pytest.raises(PaymentError):
        processor.authorize(token="", amount_minor=1, currency="GBP", idempotency_key="a")
    with pytest.raises(PaymentError):
        processor.authorize(token="t", amount_minor=-1, currency="GBP", idempotency_key="b")


def test_same_card_and_amount_get_the_same_answer_under_a_new_key() -> None:
    processor = SimulatedProcessor(seed=9, decline_rate=0.5)
    answers = {processor.authorize(token="tok_x", amount_minor=700, currency="GBP",
                                   idempotency_key=f"retry{i}").status for i in range(5)}
    assert len(answers) == 1
