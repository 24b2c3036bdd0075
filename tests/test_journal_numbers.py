"""The journal's numbering of online changes: what decides which changes a rebuild carries over."""

from __future__ import annotations

import sqlite3

from jointspace.server.index.journal import DELETE, UPSERT, Change, Journal


def test_numbers_grow_and_survive_a_carry_over(tmp_path):
    journal = Journal(tmp_path)
    assert journal.last_number() == 0
    journal.append("gen-000001", [Change(UPSERT, "a", modality="id", value="m:1"), Change(DELETE, "b")])
    first = journal.changes("gen-000001")
    assert [c.number for c in first] == [1, 2]
    journal.carry_over("gen-000002", first)
    journal.keep_only("gen-000002")
    carried = journal.changes("gen-000002")
    assert [c.number for c in carried] == [1, 2] and journal.last_number() == 4
    assert [c.key for c in journal.changes("gen-000002", after=1)] == ["b"]
    journal.append("gen-000002", [Change(DELETE, "c")])
    assert [c.number for c in journal.changes("gen-000002", after=4)] == [5]


def test_a_journal_written_before_numbers_were_kept_is_read_with_its_own_seq(tmp_path):
    old = sqlite3.connect(tmp_path / "journal.sqlite")
    old.executescript("""
        CREATE TABLE changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, generation TEXT NOT NULL,
            acknowledged REAL NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, modality TEXT, value TEXT,
            audio BLOB, sample_rate INTEGER, vector BLOB, metadata TEXT);
        INSERT INTO changes (generation, acknowledged, kind, key) VALUES ('gen-000001', 1.0, 'delete', 'x');
        INSERT INTO changes (generation, acknowledged, kind, key) VALUES ('gen-000001', 2.0, 'delete', 'y');
    """)
    old.commit()
    old.close()
    journal = Journal(tmp_path)
    assert [(c.key, c.number) for c in journal.changes("gen-000001")] == [("x", 1), ("y", 2)]
    assert [c.key for c in journal.changes("gen-000001", after=1)] == ["y"]
