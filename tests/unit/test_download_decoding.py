"""Decompressing a download as it streams: whole, in several gzip members, cut short, damaged."""

import gzip
import io
import random
import zlib

import pytest

from airflow_provider_xcompliance.client.bodies import DOWNLOAD_READ_SIZE, decoded_blocks
from airflow_provider_xcompliance.exceptions import XComplianceTransportError

WHAT = "The download of compliance job 1's results"


class _Raw:
    """What ``requests`` gives a streamed body through ``response.raw``: the bytes as sent."""

    def __init__(self, body: bytes) -> None:
        self._body = io.BytesIO(body)

    def read(self, size: int, decode_content: bool = True) -> bytes:
        assert decode_content is False  # the client inflates, urllib3 must not
        return self._body.read(size)


class _Response:
    def __init__(self, body: bytes, encoding: str | None) -> None:
        self.headers = {"Content-Encoding": encoding} if encoding else {}
        self.raw = _Raw(body)


def _results(lines: int) -> bytes:
    ids = random.Random(lines)
    return b"".join(
        b'{"id":"%d","action":"delete","created_at":"2022-03-03T17:39:50.400Z","reason":"deleted"}\n'
        % ids.randrange(10**18, 2 * 10**18)
        for _ in range(lines)
    )


def _decoded(body: bytes, encoding: str | None = "gzip") -> bytes:
    return b"".join(decoded_blocks(_Response(body, encoding), WHAT))


def test_a_gzip_stream_larger_than_one_read_comes_out_whole():
    plain = _results(100_000)
    body = gzip.compress(plain)
    assert len(body) > DOWNLOAD_READ_SIZE  # several reads, each inflated on its own
    assert _decoded(body) == plain


def test_several_gzip_members_come_out_one_after_another():
    first, second = _results(3), b'{"id":"20","action":"scrub_geo","reason":"scrub_geo"}\n'
    assert _decoded(gzip.compress(first) + gzip.compress(second)) == first + second


def test_an_identity_body_is_passed_through():
    plain = _results(10)
    assert _decoded(plain, encoding=None) == plain


def test_a_stream_cut_short_is_a_transport_error():
    body = gzip.compress(_results(1_000))
    with pytest.raises(XComplianceTransportError, match="ended early"):
        _decoded(body[: len(body) // 2])


def test_a_damaged_stream_is_a_transport_error_without_the_payload():
    plain = _results(1_000)
    body = bytearray(gzip.compress(plain))
    body[10] = 0xFF  # the first deflate block now has the reserved block type 3
    with pytest.raises(XComplianceTransportError, match="damaged") as caught:
        _decoded(bytes(body))
    assert plain[7:26].decode() not in str(caught.value)  # no ID in the message


def test_a_wrong_checksum_is_caught():
    plain = _results(100)
    body = bytearray(gzip.compress(plain))
    body[-8] ^= 0xFF  # the CRC-32 of the trailer
    assert zlib.crc32(plain) != int.from_bytes(body[-8:-4], "little")
    with pytest.raises(XComplianceTransportError, match="damaged"):
        _decoded(bytes(body))


def _member_with_header_crc(payload: bytes) -> bytes:
    """A gzip member whose header carries a CRC-16 (FHCRC) and an extra field (FEXTRA), which
    Python's gzip module never writes but other writers may."""
    header = b"\x1f\x8b\x08" + bytes([0x02 | 0x04]) + bytes(4) + b"\x00\xff"
    header += (4).to_bytes(2, "little") + b"XC\x00\x00"  # one 4-byte extra subfield
    header += (zlib.crc32(header) & 0xFFFF).to_bytes(2, "little")
    deflate = zlib.compressobj(wbits=-15)
    body = deflate.compress(payload) + deflate.flush()
    trailer = zlib.crc32(payload).to_bytes(4, "little") + len(payload).to_bytes(4, "little")
    return header + body + trailer


@pytest.mark.parametrize("cut", [1, 5, 12, 15])
def test_a_further_members_header_cut_by_a_read_boundary(cut):
    """The second member's header begins ``cut`` bytes before the end of the first read."""
    first_plain = random.Random(cut).randbytes(DOWNLOAD_READ_SIZE)
    first = gzip.compress(first_plain, compresslevel=0)
    first_plain = first_plain[: len(first_plain) - (len(first) - (DOWNLOAD_READ_SIZE - cut))]
    first = gzip.compress(first_plain, compresslevel=0)
    assert len(first) == DOWNLOAD_READ_SIZE - cut
    second_plain = _results(50)
    assert _decoded(first + _member_with_header_crc(second_plain)) == first_plain + second_plain


def test_more_output_than_one_inflate_call_gives_comes_out_whole(monkeypatch):
    from airflow_provider_xcompliance.client import bodies

    monkeypatch.setattr(bodies, "MAX_INFLATE", 4096)  # each read inflates in many calls
    plain = _results(20_000)
    assert _decoded(gzip.compress(plain) + gzip.compress(plain[:1000])) == plain + plain[:1000]
