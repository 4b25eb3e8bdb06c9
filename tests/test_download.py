"""The download command against a local HTTP server on loopback (never the internet)."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import pytest

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
