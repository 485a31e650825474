"""The stream transfer's pure parts (issue 19): the multipart body, the classification of kie.ai's answer
that it could not fetch the URL, and the configuration of the transfer. No network."""

from __future__ import annotations

import io
from email.parser import BytesParser
from email.policy import HTTP

import pytest

from kie_uploader.emulator import _BodyReader, _Multipart
from uploader.config import Config
from uploader.errors import ConfigurationError, PermanentError, TransientError
from uploader.kie import KieCouldNotFetch, interpret_answer, says_fetch_failed
from uploader.models import Transfer
from uploader.stream import CHUNK_BYTES, MultipartBody


class Source:
    """An object's bytes, read the way the body reads S3 (the sizes it asked for are kept)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.asked: list[int] = []
        self.aborted = False

    def read(self, size: int) -> bytes:
        self.asked.append(size)
        return self._data.read(size)

    def abort(self) -> None:
        self.aborted = True


def body_of(data: bytes, size: int | None = None, **fields: str) -> MultipartBody:
    names = {"upload_path": "s3-uploads/photos/0123456789abcdef", "file_name": "a photo.png", **fields}
    return MultipartBody(Source(data), len(data) if size is None else size, **names)  # type: ignore[arg-type]


def drain(body: MultipartBody, block: int = 16384) -> bytes:
    out = bytearray()
    while chunk := body.read(block):
        assert len(chunk) <= block
        out += chunk
    return bytes(out)


# --- the multipart body -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 16384, CHUNK_BYTES + 7, 3 * CHUNK_BYTES])
def test_the_body_is_exactly_as_long_as_it_says_and_parses_back_to_the_three_parts(size: int) -> None:
    data = bytes(i % 251 for i in range(size))
    body = body_of(data, media_type="image/png")

    raw = drain(body)

    assert len(raw) == len(body) == body.sent
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + body.content_type.encode() + b"\r\n\r\n" + raw
    )
    parts = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
    assert list(parts) == ["uploadPath", "fileName", "file"]  # the fields first: a server knows the path
    assert parts["uploadPath"].get_payload(decode=True) == b"s3-uploads/photos/0123456789abcdef"
    assert parts["fileName"].get_payload(decode=True) == b"a photo.png"
    assert parts["file"].get_filename() == "a photo.png"
    assert parts["file"].get_content_type() == "image/png"
    assert parts["file"].get_payload(decode=True) == data


def test_the_emulator_parses_the_body_as_it_arrives() -> None:
    data = b"--not the boundary\r\n" * 5000
    body = body_of(data, file_name="naïve \"quoted\"\nname.bin")
    raw = drain(body)
    boundary = body.content_type.partition("boundary=")[2]

    parts = _Multipart(_BodyReader(io.BufferedReader(io.BytesIO(raw)), len(raw)), boundary, None).parts()

    assert bytes(parts["file"].data) == data
    assert parts["fileName"].data.decode() == "naïve \"quoted\"\nname.bin"
    assert parts["file"].filename == "naïve %22quoted%22%0Aname.bin"  # the header's own escaping


def test_the_object_is_read_one_chunk_at_a_time_and_once_more_at_its_end() -> None:
    source = Source(b"x" * (2 * CHUNK_BYTES + 5))
    body = MultipartBody(source, 2 * CHUNK_BYTES + 5, upload_path="p", file_name="n")

    drain(body)

    assert source.asked == [CHUNK_BYTES, CHUNK_BYTES, 5, CHUNK_BYTES]  # the last read sees the end


def test_iterating_gives_the_same_bytes_as_reading() -> None:
    data = b"abc" * 1_000_000
    assert b"".join(body_of(data, boundary="b0undary")) == drain(body_of(data, boundary="b0undary"), 4096)


@pytest.mark.parametrize(("given", "declared"), [(b"short", 10), (b"x" * 11, 10)])
def test_a_source_of_another_length_fails_before_the_closing_boundary(given: bytes, declared: int) -> None:
    body = body_of(given, size=declared)
    sent = bytearray()

    with pytest.raises(TransientError, match="object's stream"):
        while chunk := body.read(4):
            sent += chunk

    assert body.boundary.encode() + b"--" not in sent  # kie.ai never gets a complete body of other bytes


def test_a_media_type_unfit_for_a_header_becomes_octet_stream() -> None:
    raw = drain(body_of(b"x", media_type="text/plain\r\nX-Injected: 1"))
    assert b"X-Injected" not in raw and b"Content-Type: application/octet-stream\r\n" in raw


def test_abort_reaches_the_source() -> None:
    source = Source(b"x")
    MultipartBody(source, 1, upload_path="p", file_name="n").abort()
    assert source.aborted


# --- kie.ai's answer that it could not fetch the URL ---------------------------------------------------


@pytest.mark.parametrize(
    "msg",
    [
        "Failed to download file: HTTP 403",  # the emulator: the origin refused (a bucket policy)
        "Failed to download file: timed out",  # the emulator: kie.ai's 30 s
        "Failed to download file: [Errno 111] Connection refused",
        "Download timeout",
        "Unable to fetch the file from fileUrl",
        "文件下载失败",
    ],
)
def test_a_msg_about_the_download_is_a_fetch_failure(msg: str) -> None:
    assert says_fetch_failed(msg)


@pytest.mark.parametrize(
    "msg", ["Internal server error", "Missing required parameter: uploadPath", "文件上传成功"]
)
def test_other_msgs_are_not(msg: str) -> None:
    assert not says_fetch_failed(msg)


def answer(code: int, msg: str) -> str:
    return f'{{"success": false, "code": {code}, "msg": "{msg}"}}'


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [(500, 500, TransientError), (400, 400, PermanentError), (200, 500, TransientError)],
)
def test_a_fetch_failure_keeps_its_kind_and_is_marked(status: int, code: int, kind: type[Exception]) -> None:
    with pytest.raises(kind) as raised:
        interpret_answer(status, answer(code, "Failed to download file: HTTP 403"))
    assert isinstance(raised.value, KieCouldNotFetch)


@pytest.mark.parametrize(
    ("status", "msg"), [(500, "Internal server error"), (401, "Failed to download file")]
)
def test_other_errors_are_not_marked(status: int, msg: str) -> None:
    with pytest.raises((TransientError, ConfigurationError)) as raised:
        interpret_answer(status, answer(status, msg))
    assert not isinstance(raised.value, KieCouldNotFetch)


# --- configuration ------------------------------------------------------------------------------------

BASE = {"TABLE_NAME": "records", "KIE_API_KEY_SECRET_ID": "kie/api-key"}


def test_auto_is_the_default_with_the_url_limit_of_kie_ai_and_no_size_limit() -> None:
    config = Config.from_env(BASE)
    assert config.transfer is Transfer.AUTO
    assert (config.url_transfer_max_bytes, config.max_object_bytes) == (104_857_600, None)
    assert config.stream_url == config.kie_base_url and config.kie_cannot_fetch == frozenset()


def test_url_keeps_the_old_size_limit() -> None:
    assert Config.from_env({**BASE, "TRANSFER": "URL"}).max_object_bytes == 104_857_600


def test_every_transfer_variable_is_read() -> None:
    config = Config.from_env(
        {
            **BASE,
            "TRANSFER": "stream",
            "URL_TRANSFER_MAX_BYTES": "1000",
            "KIE_STREAM_BASE_URL": "https://kieai.redpandaai.co/",
            "KIE_CANNOT_FETCH": "photos, docs.example",
            "STREAM_BYTES_PER_SECOND": "1048576",
            "MAX_OBJECT_BYTES": "",
        }
    )
    assert config.transfer is Transfer.STREAM and config.url_transfer_max_bytes == 1000
    assert config.stream_url == "https://kieai.redpandaai.co"
    assert config.kie_cannot_fetch == frozenset({"photos", "docs.example"})
    assert config.stream_bytes_per_second == 1_048_576 and config.max_object_bytes is None


def test_the_15_minute_limit_follows_the_planned_rate() -> None:
    rate = {"STREAM_BYTES_PER_SECOND": str(10 * 2**20), "KIE_TIMEOUT_SECONDS": "40"}
    config = Config.from_env({**BASE, **rate})
    # 900 s, less 15 s for the record's reads and writes and 40 s for kie.ai's answer, at 10 MiB/s
    assert config.stream_max_bytes == 845 * 10 * 2**20
    assert config.stream_seconds(2 * 2**30) == pytest.approx(2048 / 10 + 40)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"TRANSFER": "ftp"}, "TRANSFER"),
        ({"TRANSFER": "url", "KIE_CANNOT_FETCH": "photos"}, "KIE_CANNOT_FETCH"),
        ({"KIE_CANNOT_FETCH": "Not_A_Bucket"}, "KIE_CANNOT_FETCH"),
        ({"KIE_STREAM_BASE_URL": "kieai.redpandaai.co"}, "KIE_STREAM_BASE_URL"),
        ({"STREAM_BYTES_PER_SECOND": "1000"}, "STREAM_BYTES_PER_SECOND"),
        ({"URL_TRANSFER_MAX_BYTES": "0"}, "URL_TRANSFER_MAX_BYTES"),
    ],
)
def test_a_bad_transfer_setting_names_its_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        Config.from_env({**BASE, **env})
