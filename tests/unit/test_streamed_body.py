"""A streamed PUT body: its last block goes out only once the stream has ended at exactly the
length announced, so a storage server that keeps only whole bodies never keeps a wrong one."""

import pytest

from airflow_provider_xcompliance.client.bodies import BodyLengthChanged, StreamedBody


class Source:
    """Blocks handed out afresh on each pass, with a record of passes and closes."""

    def __init__(self, *blocks, error=None):
        self.blocks = blocks
        self.error = error
        self.passes = self.closed = 0

    def __call__(self):
        self.passes += 1
        return self._blocks()

    def _blocks(self):
        try:
            yield from self.blocks
            if self.error:
                raise self.error
        finally:
            self.closed += 1


def sent_before_failing(body, error=BodyLengthChanged):
    sent = []
    with pytest.raises(error):
        for block in body:
            sent.append(block)
    return b"".join(sent)


def test_a_stream_of_the_announced_length_is_sent_whole_on_every_pass():
    source = Source(b"11\n", b"", b"22\n", b"33\n")
    body = StreamedBody(source, 9)
    assert len(body) == 9
    assert b"".join(body) == b"11\n22\n33\n"
    assert b"".join(body) == b"11\n22\n33\n"  # a retry reads the source again
    assert source.passes == source.closed == 2


@pytest.mark.parametrize(
    "blocks",
    [
        (b"11\n", b"22\n", b"33\n", b"44\n"),  # longer: one block too many
        (b"11\n", b"22\n"),  # shorter
        (b"11\n", b"22\n", b"333\n"),  # the last block overshoots
    ],
    ids=["longer", "shorter", "overshoot"],
)
def test_a_stream_of_another_length_stops_before_the_announced_length_is_reached(blocks):
    source = Source(*blocks)
    sent = sent_before_failing(StreamedBody(source, 9))
    assert len(sent) < 9 and b"".join(blocks).startswith(sent)
    assert source.closed == 1


def test_a_failure_in_the_source_stops_the_body_short():
    source = Source(b"11\n", b"22\n", b"33\n", error=ValueError("line 4 is bad"))
    assert sent_before_failing(StreamedBody(source, 9), ValueError) == b"11\n22\n"
    assert source.closed == 1


@pytest.mark.parametrize(
    "content, streamed",
    [
        (b"1\n22\n333\n", True),
        (b"1\n22\n333", False),  # no line feed at the end: one is added, so the length changes
        (b"\xef\xbb\xbf1\n22\n", False),
        (b"1\r\n22\r\n", False),
        (b" " * 70_000 + b"\n", False),  # no whole line in the first 64 KiB: nothing to judge by
        (b"", False),
    ],
)
def test_only_an_id_file_that_looks_canonical_is_streamed(tmp_path, content, streamed):
    from airflow_provider_xcompliance.id_files import canonical_length

    path = tmp_path / "ids.txt"
    path.write_bytes(content)
    assert canonical_length(path) == (len(content) if streamed else None)
    assert canonical_length(tmp_path / "missing.txt") is None
