"""Records bound for another process: sealed ones pickle once and arrive as themselves."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from engine.decode import decode_line
from engine.events import Event
from flows.packets import Sealed, Tick, ToIdentity, seal, unseal
from leadstream.generate import GenerateOptions, generate_lines


class _Counted:
    """A payload that counts how often pickle asks it to reduce itself."""

    reductions = 0

    def __init__(self, value: Any) -> None:
        self.value = value

    def __reduce__(self) -> tuple[Any, ...]:
        type(self).reductions += 1
        return (_Counted, (self.value,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Counted) and other.value == self.value


def _packet() -> ToIdentity:
    lines = list(generate_lines(GenerateOptions(events=300, contacts=40, seed=3)))
    events = [e for e in (decode_line(line) for line in lines) if isinstance(e, Event)]
    return ToIdentity(3, events, [], [Tick("events.jsonl", max(e.ts for e in events))], None)


def test_a_sealed_record_is_pickled_once_however_often_its_wrapper_is() -> None:
    """Bytewax pickles what crosses processes twice (to size it, then to write it): the record's own work happens once."""
    _Counted.reductions = 0
    sealed = Sealed(_Counted([1, "two", {"three": 3.0}]))
    first, second = pickle.dumps(sealed), pickle.dumps(sealed)
    assert _Counted.reductions == 1
    assert first == second  # the size Bytewax measured is the size it writes


def test_a_sealed_record_unpickles_as_the_record_itself() -> None:
    """A step in another process receives the record, not the wrapper, equal field by field."""
    packet = _packet()
    assert len(packet.events) > 200
    back = pickle.loads(pickle.dumps(("3", Sealed(packet))))
    assert back[0] == "3"
    assert type(back[1]) is ToIdentity
    assert back[1] == packet


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Sealed("a record"), "a record"),  # a step in the same process gets the wrapper
        ("a record", "a record"),  # one in another process gets the record
        (None, None),
    ],
)
def test_unseal_takes_the_record_out_of_either_form(value: Any, expected: Any) -> None:
    """Steps unseal every value, whichever way it came."""
    assert unseal(value) == expected


def test_seal_keeps_the_key_readable_for_routing() -> None:
    """The key stays a plain string: Bytewax routes stateful steps by it."""
    packet = _packet()
    key, sealed = seal(("7", packet))
    assert key == "7"
    assert isinstance(sealed, Sealed) and sealed.payload is packet
