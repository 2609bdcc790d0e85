"""Parsing a check-in: the process fields (``process_id``, ``checkin_interval``, ``goodbye``), their bounds,
the errors that name the field and what was wrong with it, and what older clients that send none of them get."""

from __future__ import annotations

import json

import pytest

from anvil_forge.distribution.checkin import (
    DEFAULT_CHECKIN_INTERVAL,
    MAX_CHECKIN_INTERVAL,
    MAX_PROCESS_ID,
    CheckInError,
    parse_checkin,
)


def parse(**fields):
    return parse_checkin(json.dumps({"instance_id": "app-on-host-1", **fields}).encode())


def test_an_old_client_without_process_fields_is_one_process_with_id_zero_and_the_default_interval():
    checkin = parse(process_count=4, versions={"core": 2})
    assert checkin.process_id == 0
    assert checkin.checkin_interval == DEFAULT_CHECKIN_INTERVAL == 60
    assert checkin.goodbye is False
    assert checkin.process_count == 4, "still accepted from older clients"
    assert checkin.gone_after_seconds == 180


def test_null_process_fields_mean_the_same_as_absent_ones():
    checkin = parse(process_id=None, checkin_interval=None, goodbye=None)
    assert (checkin.process_id, checkin.checkin_interval, checkin.goodbye) == (0, 60, False)


def test_process_fields_are_read_as_sent():
    checkin = parse(process_id=4242, checkin_interval=15, goodbye=True)
    assert (checkin.process_id, checkin.checkin_interval, checkin.goodbye) == (4242, 15.0, True)


@pytest.mark.parametrize("process_id", [1, 2**31 - 1])
def test_process_id_accepts_1_to_2_to_the_31_minus_1(process_id):
    assert parse(process_id=process_id).process_id == process_id <= MAX_PROCESS_ID


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0, "not 0"),
        (-5, "not -5"),
        (2**31, "not 2147483648"),
        (2**70, "not a larger number"),
        (12.5, "not 12.5"),
        ("123", "not a string"),
        (True, "not a boolean"),
        ([1], "not an array"),
        ({"pid": 1}, "not an object"),
    ],
)
def test_process_id_out_of_range_or_of_another_type_is_refused_naming_the_field_and_the_value(value, shown):
    with pytest.raises(CheckInError) as refused:
        parse(process_id=value)
    message = str(refused.value)
    assert message.startswith("process_id: must be a whole number from 1 to 2147483647")
    assert shown in message


@pytest.mark.parametrize(("interval", "gone_after"), [(1, 30), (10, 30), (10.5, 31.5), (60, 180), (86_400, 259_200)])
def test_checkin_interval_accepts_1_to_86400_seconds_and_sets_when_the_process_is_gone(interval, gone_after):
    checkin = parse(checkin_interval=interval)
    assert checkin.checkin_interval == interval
    assert checkin.gone_after_seconds == gone_after, "three intervals, at least 30 s"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0, "not 0"),
        (0.5, "not 0.5"),
        (86_401, "not 86401"),
        ("60", "not a string"),
        (False, "not a boolean"),
    ],
)
def test_checkin_interval_out_of_range_or_of_another_type_is_refused(value, shown):
    with pytest.raises(CheckInError) as refused:
        parse(checkin_interval=value)
    message = str(refused.value)
    assert message.startswith(f"checkin_interval: must be a number of seconds from 1 to {MAX_CHECKIN_INTERVAL}")
    assert shown in message


def test_an_interval_too_large_for_a_float_is_refused():
    with pytest.raises(CheckInError, match=r"^checkin_interval: .* not inf$"):
        parse_checkin(b'{"instance_id": "a", "checkin_interval": 1e999}')


@pytest.mark.parametrize(("value", "shown"), [(1, "not 1"), ("true", "not a string"), ([], "not an array")])
def test_goodbye_must_be_a_boolean(value, shown):
    with pytest.raises(CheckInError) as refused:
        parse(goodbye=value)
    assert str(refused.value) == f"goodbye: must be true or false, {shown}"


def test_an_unknown_field_is_still_refused():
    with pytest.raises(CheckInError, match=r"^pid: is not a check-in field$"):
        parse(pid=12)
