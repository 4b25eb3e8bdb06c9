"""The download command against a local HTTP server on loopback (never the internet)."""

from __future__ import annotations

import io
import socket
import threading
import time
from pathlib import Path

import pytest

from afm import download
from afm.cli import main
from afm.data import load_dataset
from afm.download import RemoteFile, download_dataset, git_blob_sha1
from afm.errors import DownloadError

ROWS = "".join(f"{1 if i % 3 else -1} {i % 4}:1 {4 + i % 5}:1 {9 + i % 2}:1\n" for i in range(60))


def publish(www: Path, sizes=True):
    manifest = []
    for split in ("train", "validation", "test"):
        path = www / "toy" / f"toy.{split}.libfm"
        path.write_text(ROWS)
        manifest.append(RemoteFile(path.name, git_blob_sha1(path), path.stat().st_size if sizes else None))
    return {"toy": manifest}


def test_git_blob_sha1_matches_git(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"hello\n")
    assert git_blob_sha1(path) == "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object`


def test_downloads_verifies_and_loads(server, tmp_path):
    base_url, www = server
    manifest = publish(www)
    log = io.StringIO()
    directory = download_dataset("toy", tmp_path / "data", base_url=base_url, manifest=manifest, progress=log)
    assert sorted(p.name for p in directory.iterdir()) == ["toy.test.libfm", "toy.train.libfm", "toy.validation.libfm"]
    assert "MB" in log.getvalue()  # the progress bar was drawn
    assert len(load_dataset(directory).train) == 60
    # A second run finds the verified files and downloads nothing.
    (www / "toy" / "toy.train.libfm").unlink()
    download_dataset("toy", tmp_path / "data", base_url=base_url, manifest=manifest, progress=log)
    assert "already downloaded" in log.getvalue()


def test_tampered_file_is_rejected_and_not_kept(server, tmp_path):
    base_url, www = server
    manifest = publish(www, sizes=False)
    (www / "toy" / "toy.test.libfm").write_text(ROWS.replace("-1", "+1"))
    with pytest.raises(DownloadError, match="differs from the published file"):
        download_dataset("toy", tmp_path / "data", base_url=base_url, manifest=manifest, progress=io.StringIO())
    leftovers = sorted(p.name for p in (tmp_path / "data" / "toy").iterdir())
    assert "toy.test.libfm" not in leftovers and not any(n.endswith(".part") for n in leftovers)


def test_wrong_size_is_rejected(server, tmp_path):
    base_url, www = server
    manifest = publish(www)
    manifest["toy"][0] = RemoteFile("toy.train.libfm", manifest["toy"][0].git_blob_sha1, 12)
    with pytest.raises(DownloadError, match="published file has 12"):
        download_dataset("toy", tmp_path / "data", base_url=base_url, manifest=manifest, progress=io.StringIO())


def test_missing_file_reports_the_http_status(server, tmp_path):
    base_url, www = server
    manifest = publish(www)
    (www / "toy" / "toy.validation.libfm").unlink()
    with pytest.raises(DownloadError, match="404"):
        download_dataset("toy", tmp_path / "data", base_url=base_url, manifest=manifest, progress=io.StringIO())


def test_offline_is_a_clear_error_from_the_cli(tmp_path, capsys):
    # A loopback port with nobody listening: connection refused, as when offline.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = main(["download", "frappe", "--dest", str(tmp_path), "--base-url", f"http://127.0.0.1:{port}",
                 "--timeout", "5"])
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot connect" in err and "offline" in err and len(err.strip().splitlines()) == 1


TRICKLED_BYTES = 100_000  # announced; at 50 bytes a second it would take over half an hour
TRICKLE_SECONDS = 20  # the server stops by itself after this long, whatever the client does


@pytest.fixture
def trickling_server():
    """A server on 127.0.0.1 that answers every request one byte every 20 ms: each byte well within
    any read timeout, the whole never. `mode["headers"]`: trickle the headers too (padded long)."""
    stop, mode = threading.Event(), {"headers": False}
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)

    def answer(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(1)
            try:
                request = b""
                while b"\r\n\r\n" not in request and len(request) < 65536:
                    part = conn.recv(4096)
                    if not part:
                        return
                    request += part
                padding = b"X-Padding: " + b"p" * 5000 + b"\r\n" if mode["headers"] else b""
                head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n" % (TRICKLED_BYTES, padding)
                if not mode["headers"]:
                    conn.sendall(head)
                    head = b""
                end = time.monotonic() + TRICKLE_SECONDS
                for byte in head + b"1 0:1 1:1\n" * (TRICKLED_BYTES // 10):
                    if stop.is_set() or time.monotonic() > end:
                        return
                    conn.sendall(bytes([byte]))
                    time.sleep(0.02)
            except OSError:  # the client hung up
                return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", mode
    stop.set()
    thread.join(timeout=5)
    listener.close()


TRICKLED = {"toy": [RemoteFile("toy.train.libfm", "0" * 40, TRICKLED_BYTES)]}


@pytest.mark.parametrize("headers", [False, True], ids=["body trickled", "headers trickled"])
def test_a_trickling_server_is_cut_off_at_the_deadline(trickling_server, tmp_path, headers):
    """--timeout bounds each read; a byte within every timeout used to hold the download forever."""
    base_url, mode = trickling_server
    mode["headers"] = headers
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"not complete after the 1 s one file may take") as info:
        download_dataset("toy", tmp_path / "data", base_url=base_url, manifest=TRICKLED, timeout=5, deadline=1,
                         progress=io.StringIO())
    assert time.monotonic() - start < 4, "cut off at the deadline, not at the end of the trickle"
    assert "too slow" in str(info.value) and "\n" not in str(info.value)
    assert not [p.name for p in (tmp_path / "data" / "toy").iterdir()]  # no file, no .part


def test_the_default_deadline_is_a_multiple_of_the_timeout(trickling_server, tmp_path, monkeypatch, capsys):
    """From the CLI with --timeout alone: each file gets DEADLINE_PER_TIMEOUT times it in all."""
    monkeypatch.setattr(download, "DEADLINE_PER_TIMEOUT", 4, raising=False)  # 4 x 0.25 s
    base_url, _ = trickling_server
    start = time.monotonic()
    code = main(["download", "frappe", "--dest", str(tmp_path), "--base-url", base_url, "--timeout", "0.25"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "frappe.train.libfm: not complete after the 1 s one file may take" in err
    assert time.monotonic() - start < 4


@pytest.mark.parametrize("deadline", [0, -1, float("inf"), float("nan")])
def test_a_deadline_that_is_no_deadline_is_refused(tmp_path, deadline):
    with pytest.raises(DownloadError, match="deadline must be a positive number"):
        download_dataset("toy", tmp_path, manifest=TRICKLED, deadline=deadline, progress=io.StringIO())
