"""A data directory's identity: created once, kept; a peer's first one recorded durably and any
other refused; damaged files refused with the file and line."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from raftlib.core.types import Entry
from raftlib.identity import (
    IDENTITY_NAME,
    PEER_IDENTITIES_NAME,
    DataIdentity,
    IdentityError,
    format_data_id,
)
from raftlib.storage.fs import CrashFS
from raftlib.storage.wal import WalStorage


def test_a_data_directory_gets_one_id_that_survives_reopening(tmp_path: Path) -> None:
    first = DataIdentity(tmp_path)
    again = DataIdentity(tmp_path)
    assert first.own == again.own != 0
    text = (tmp_path / IDENTITY_NAME).read_text()
    assert text == f"raftlib-data-id 1 {format_data_id(first.own)}\n"
    (tmp_path / "other").mkdir()
    assert DataIdentity(tmp_path / "other").own != first.own  # another directory, another id


def test_an_id_of_zero_is_never_drawn(tmp_path: Path) -> None:
    draws = iter([bytes(8), bytes(8), b"\x00" * 7 + b"\x05"])
    assert DataIdentity(tmp_path, random_bytes=lambda n: next(draws)).own == 5


def test_the_first_id_a_peer_shows_is_kept_across_restarts_and_another_is_refused(
    tmp_path: Path,
) -> None:
    identity = DataIdentity(tmp_path)
    assert identity.check(2, 0xAB) is None  # never seen: no objection
    assert identity.record(2, 0xAB) is None
    assert identity.record(2, 0xAB) is None  # the same again: nothing to write
    reopened = DataIdentity(tmp_path)
    assert reopened.known(2) == 0xAB
    refusal = reopened.check(2, 0xCD)
    assert refusal is not None
    assert "node 2 shows data directory 00000000000000cd" in refusal
    assert "it ran on data directory 00000000000000ab" in refusal
    assert "replace it under a new node id" in refusal
    assert reopened.record(2, 0xCD) == refusal
    assert DataIdentity(tmp_path).known(2) == 0xAB  # the refused one was not written


def test_a_known_peer_that_shows_no_id_is_refused_and_an_unknown_one_is_not_recorded(
    tmp_path: Path,
) -> None:
    identity = DataIdentity(tmp_path)
    assert identity.record(3, 0) is None
    assert identity.known(3) is None
    identity.record(2, 7)
    refusal = identity.check(2, 0)
    assert refusal is not None and "node 2 shows no data directory id" in refusal


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        (IDENTITY_NAME, "raftlib-data-id 1 12345\n", "line 1: expected"),
        (IDENTITY_NAME, "raftlib-data-id 1 " + "0" * 16 + "\n", "line 1: expected"),
        (IDENTITY_NAME, "raftlib-data-id 1 " + "a" * 16, "line 1: expected"),
        (IDENTITY_NAME, "something else\n", "line 1: expected"),
        (PEER_IDENTITIES_NAME, "2 " + "a" * 16 + "\n3 xyz\n", "line 2: expected"),
        (PEER_IDENTITIES_NAME, "0 " + "a" * 16 + "\n", "line 1: expected"),
        (PEER_IDENTITIES_NAME, "2 " + "a" * 16, "last line is cut short"),
        (PEER_IDENTITIES_NAME, "2 " + "a" * 16 + "\n2 " + "b" * 16 + "\n", "listed twice"),
        (PEER_IDENTITIES_NAME, "\u0662 " + "a" * 16 + "\n", "not an ASCII text file"),
    ],
)
def test_a_damaged_identity_file_is_refused_naming_the_file_and_line(
    tmp_path: Path, name: str, content: str, reason: str,
) -> None:
    DataIdentity(tmp_path)
    (tmp_path / name).write_bytes(content.encode())
    with pytest.raises(IdentityError, match=reason) as caught:
        DataIdentity(tmp_path)
    message = str(caught.value)
    assert str(tmp_path / name) in message and "\n" not in message


def test_the_peer_records_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("raftlib.identity.PEER_IDENTITIES_MAX", 2)
    identity = DataIdentity(tmp_path)
    assert identity.record(1, 11) is None and identity.record(2, 12) is None
    refusal = identity.record(3, 13)
    assert refusal is not None and "PEER_IDENTITIES_MAX" in refusal
    assert identity.known(3) is None


def test_a_record_is_written_whole_or_not_at_all(tmp_path: Path) -> None:
    """tmp, fsync, rename: a leftover temporary file (a crash before the rename) is neither
    read nor in the way of the next record."""
    identity = DataIdentity(tmp_path)
    identity.record(2, 0xAB)
    (tmp_path / (PEER_IDENTITIES_NAME + ".tmp")).write_text("garbage")
    reopened = DataIdentity(tmp_path)
    assert reopened.known(2) == 0xAB
    reopened.record(3, 0xCD)
    assert sorted(os.listdir(tmp_path)) == sorted([IDENTITY_NAME, PEER_IDENTITIES_NAME])
    assert (tmp_path / PEER_IDENTITIES_NAME).read_text() == (
        f"2 {format_data_id(0xAB)}\n3 {format_data_id(0xCD)}\n")


def test_the_wal_storage_gives_its_directory_identity_once_asked(tmp_path: Path) -> None:
    storage = WalStorage(tmp_path / "node")
    assert not (tmp_path / "node" / IDENTITY_NAME).exists()  # nothing written unasked
    identity = storage.data_identity()
    assert storage.data_identity() is identity
    storage.close()
    with WalStorage(tmp_path / "node") as reopened:
        assert reopened.data_identity().own == identity.own


def _after_every_power_loss(fs: CrashFS) -> list[DataIdentity | str]:
    """The identity a node reads back after each state a power loss right now may leave (or
    why it could not)."""
    read_back: list[DataIdentity | str] = []
    for state in fs.crash_states():
        try:
            read_back.append(DataIdentity("/data", fs=state))
        except IdentityError as exc:
            read_back.append(str(exc))
    return read_back


def test_an_id_and_a_recorded_peer_survive_any_power_loss_once_written() -> None:
    """The ids are fsynced and renamed into place, and the directory fsynced, before they are
    used: a hello that showed this node's id, or the peer it accepted, is never forgotten by a
    power loss (a forgotten record would let that peer's wiped disk back in)."""
    fs = CrashFS()
    fs.makedirs("/data")
    root = fs.open("/", os.O_RDONLY | os.O_DIRECTORY)
    fs.fsync(root)  # the data directory itself is durable (WalStorage sees to that)
    fs.close(root)
    identity = DataIdentity("/data", fs=fs)
    identity.record(2, 0xAB)
    states = _after_every_power_loss(fs)
    assert states
    for state in states:
        assert isinstance(state, DataIdentity), state
        assert (state.own, state.known(2)) == (identity.own, 0xAB)


def test_a_new_id_for_a_directory_that_holds_state_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """An upgrade from a version without ids, or a deleted identity file: the node goes on
    (refusing to start would block upgrades) but says its peers may refuse it."""
    with WalStorage(tmp_path / "node") as storage:
        storage.append([Entry(1, 1, b"x")])
        storage.sync()
    with caplog.at_level(logging.WARNING, logger="raftlib.identity"):
        DataIdentity(tmp_path / "node")
    assert any("holds Raft state but no identity file" in r.getMessage()
               for r in caplog.records), caplog.text
    caplog.clear()
    (tmp_path / "fresh").mkdir()
    with caplog.at_level(logging.WARNING, logger="raftlib.identity"):
        DataIdentity(tmp_path / "fresh")
    assert not caplog.records


def test_an_identity_file_too_large_to_be_one_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    DataIdentity(tmp_path)
    monkeypatch.setattr("raftlib.identity.IDENTITY_FILE_BYTES_MAX", 10)
    with pytest.raises(IdentityError, match="IDENTITY_FILE_BYTES_MAX is 10"):
        DataIdentity(tmp_path)
