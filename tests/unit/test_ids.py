"""ID files: validation and normalisation while streaming."""

import pytest

from airflow_provider_xcompliance.exceptions import InvalidIdError
from airflow_provider_xcompliance.id_files import IdNormalizer, blocks_from_ids, normalized_blocks


def clean(blocks, source="ids.txt"):
    normalizer = IdNormalizer(source)
    data = b"".join(normalized_blocks(blocks, source, normalizer))
    return data, normalizer.ids


def test_clean_file_passes_unchanged():
    assert clean([b"1\n22\n1234567890123456789\n"]) == (b"1\n22\n1234567890123456789\n", 3)


def test_tolerated_forms_are_normalised():
    raw = b"\xef\xbb\xbf12\r\n  34 \t\r\n\n\n56\t\n78"
    assert clean([raw]) == (b"12\n34\n56\n78\n", 4)


def test_lines_split_across_blocks_in_every_place():
    raw = b"\xef\xbb\xbf111\r\n22\n\n333 \n4444"
    for cut in range(len(raw) + 1):
        assert clean([raw[:cut], raw[cut:]]) == (b"111\n22\n333\n4444\n", 4), cut
    assert clean([bytes([b]) for b in raw]) == (b"111\n22\n333\n4444\n", 4)


@pytest.mark.parametrize(
    "raw, line",
    [
        (b"1\n2\nabc\n4\n", 3),
        (b"1\n\n\n12345678901234567890\n", 4),  # 20 digits
        (b"1\r\n2\r\n-3\r\n", 3),
        (b"1\n1 2\n", 2),
        (b"5\n6\n7\n1e5", 4),  # last line without newline
        (b"1\n\xef\xbb\xbf2\n", 2),  # a BOM is tolerated only at the start
        (b"--boundary\nContent-Disposition: form-data\n\n1\n", 1),  # multipart wrapping
    ],
)
def test_bad_line_names_file_and_line(raw, line):
    with pytest.raises(InvalidIdError) as caught:
        clean([raw[:3], raw[3:]], source="s3://bucket/ids.txt")
    assert caught.value.line_number == line
    assert f"s3://bucket/ids.txt, line {line}:" in str(caught.value)


def test_nothing_after_a_bad_line_is_yielded():
    good = b"".join(b"%d\n" % i for i in range(1, 100001))
    blocks = [good, b"x\n", b"7\n"]
    sent = []
    with pytest.raises(InvalidIdError):
        for block in normalized_blocks(blocks, "ids"):
            sent.append(block)
    assert b"".join(sent) == good


def test_empty_inputs():
    assert clean([]) == (b"", 0)
    assert clean([b""]) == (b"", 0)
    assert clean([b"\n \n\r\n"]) == (b"", 0)
    assert clean([b"\xef\xbb\xbf"]) == (b"", 0)


def test_ids_from_an_iterable():
    data, count = clean(blocks_from_ids([1, "22", 333], batch=2), source="items")
    assert (data, count) == (b"1\n22\n333\n", 3)
    with pytest.raises(InvalidIdError) as caught:
        clean(blocks_from_ids(["1", "2\n3"]), source="items")
    assert caught.value.line_number == 2


def test_a_file_without_line_feeds_fails_before_filling_memory():
    with pytest.raises(InvalidIdError, match=r"ids.txt, line 1: .*\\\\r"):
        clean([b"123\r456\r" * 1000] * 100)  # classic Mac line ends: one endless line


@pytest.mark.parametrize(
    "raw, line, why",
    [
        (b"1\n0123\n", 2, "without leading zeros"),
        (b"0\n", 1, "without leading zeros"),
        (b"9223372036854775807\n9223372036854775808\n", 2, "larger than 9223372036854775807"),
        (b"1\n2\n9999999999999999999\n", 3, "larger than 9223372036854775807"),
    ],
)
def test_ids_that_are_no_64_bit_integer_are_refused(raw, line, why):
    with pytest.raises(InvalidIdError, match=why) as caught:
        clean([raw])
    assert caught.value.line_number == line


def _lines(values):
    return b"".join(b"%s\n" % v for v in values)


@pytest.mark.parametrize("width", [1, 7, 18, 19])
def test_uniform_width_blocks_are_checked_in_every_line(width):
    """The strided fast path must see a bad line wherever it sits in a block of equal widths."""
    good = [b"1" * width] * 1000
    assert clean([_lines(good)]) == (_lines(good), 1000)
    bads = [b"0" + b"1" * (width - 1)]
    if width == 19:
        bads.append(b"9223372036854775808")
    for bad in bads:
        for position in (0, 1, 500, 999):
            values = list(good)
            values[position] = bad
            with pytest.raises(InvalidIdError) as caught:
                clean([_lines(values)])
            assert caught.value.line_number == position + 1


def test_mixed_widths_are_checked_in_every_line():
    """User IDs mix widths: short IDs starting with 9 are fine, a 19-digit one above the maximum is not."""
    good = [b"9", b"95", b"987654321", b"1234567890123456789", b"9223372036854775807", b"900"] * 100
    assert clean([_lines(good)]) == (_lines(good), 600)
    for position in (0, 299, 599):
        for bad in (b"9223372036854775808", b"09", b"1" * 20):
            values = list(good)
            values[position] = bad
            with pytest.raises(InvalidIdError) as caught:
                clean([_lines(values)])
            assert caught.value.line_number == position + 1


@pytest.mark.parametrize(
    "raw, expected",
    [
        # Each has a line feed wherever the first line's width says one should be, and one more:
        # the equal-width check alone passed them (counting 2 IDs, and letting "0" or a blank
        # line through); every line feed must be one of the expected ones.
        (b"376898\n99\n340\n", (b"376898\n99\n340\n", 3)),
        (b"12\n9\n\n", (b"12\n9\n", 2)),
        (b"40700131\n891629\n0\n", 3),
    ],
)
def test_mixed_widths_that_line_up_with_the_first_line_are_still_checked(raw, expected):
    if isinstance(expected, int):
        with pytest.raises(InvalidIdError) as caught:
            clean([raw])
        assert caught.value.line_number == expected
    else:
        assert clean([raw]) == expected


@pytest.mark.parametrize(
    "raw, line",
    [
        (b"9223372036854775807\n9223372036854775808\n5\n", 2),  # right after another 19-digit 9-line
        (b"5\n9223372036854775807\n9999999999999999999\n", 3),
        (b"9223372036854775808\n5\n", 1),  # the first line, which no line feed precedes
    ],
)
def test_too_large_ids_among_mixed_widths_are_found_wherever_they_sit(raw, line):
    with pytest.raises(InvalidIdError, match="larger than") as caught:
        clean([raw])
    assert caught.value.line_number == line


def test_a_short_first_line_starting_with_9_is_not_read_as_19_digits():
    # The first 20 bytes end in a line feed, but hold two lines: no 19-digit ID to compare.
    raw = b"99\n1234567890123456\n"
    assert clean([raw]) == (raw, 2)


@pytest.mark.parametrize(
    "raw, normalised",
    [
        (b"1\n22\n333\n", False),
        (b"\xef\xbb\xbf1\n22\n", True),
        (b"1\r\n22\r\n", True),
        (b"1\n\n22\n", True),
        (b" 1\n22\n", True),
        (b"1\n22", True),  # a line feed added at the end
    ],
)
def test_the_normalizer_says_whether_it_changed_anything(raw, normalised):
    """A simple upload streams an ID file with the file's length only while nothing changes."""
    normalizer = IdNormalizer("ids.txt")
    out = b"".join(normalized_blocks([raw[:2], raw[2:]], "ids.txt", normalizer))
    assert normalizer.normalised is normalised
    assert (out != raw) is normalised
