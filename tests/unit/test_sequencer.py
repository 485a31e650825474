"""S3 sequencer ordering: AWS's right-padded comparison, and a stored form that DynamoDB orders the same."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uploader import sequencer as seq

hex_strings = st.text(alphabet="0123456789abcdefABCDEF", min_size=1, max_size=40)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("0055AED6DCD90281E5", "0055AED6DCD90281E6", -1),
        ("0055AED6DCD90281E5", "0055AED6DCD90281E5", 0),
        ("0A", "0A00", 0),  # padded: equal
        ("0A", "0A01", -1),  # shorter but padded smaller
        ("0B", "0A01", 1),  # shorter yet newer: plain string comparison would agree, length would not
        ("FF", "0100", 1),
        ("abc", "ABC", 0),  # case does not matter
    ],
)
def test_compare_right_pads_the_shorter_value(a: str, b: str, expected: int) -> None:
    assert seq.compare(a, b) == expected


@pytest.mark.parametrize(
    ("raw", "stored"), [("0055ae00", "0055AE"), ("000", "0"), ("1", "1"), ("a0b0", "A0B")]
)
def test_canonical_form_is_uppercase_without_trailing_zeros(raw: str, stored: str) -> None:
    assert seq.canonical(raw) == stored


@pytest.mark.parametrize("bad", ["", "xyz", "12 34", "0x12", "1" * 129, 12])
def test_non_hex_sequencers_are_refused(bad: object) -> None:
    with pytest.raises(seq.InvalidSequencerError):
        seq.canonical(bad)  # type: ignore[arg-type]


@given(hex_strings, hex_strings)
def test_string_order_of_canonical_forms_equals_the_padded_comparison(a: str, b: str) -> None:
    # This is what lets a DynamoDB condition (`sequencer <= :new`, a string comparison) order events.
    ca, cb = seq.canonical(a), seq.canonical(b)

    assert ((ca > cb) - (ca < cb)) == seq.compare(a, b)


@given(hex_strings)
def test_canonical_form_compares_equal_to_the_original(a: str) -> None:
    assert seq.compare(seq.canonical(a), a) == 0
