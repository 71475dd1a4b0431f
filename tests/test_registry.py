"""The ID registry on SQLite and on a real PostgreSQL server (one suite, both backends): unique IDs
under concurrency, crash safety, migration mappings."""

import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rqgmm import RQKMeans, load
from rqgmm.cli import main
from rqgmm.errors import InvalidInputError
from rqgmm.io.tables import write_matrix
from rqgmm.registry import IDRegistry, RegistryError


def test_new_items_get_the_smallest_free_suffix_and_known_items_keep_theirs(registry_url):
    with IDRegistry(registry_url, create=True) as store:
        first = store.assign(["a", "b", "c"], np.array([[1, 2], [1, 2], [3, 4]]), "v1")
        assert [a.sid for a in first] == [(1, 2, 0), (1, 2, 1), (3, 4, 0)] and all(a.new for a in first)
        again = store.assign(["b", "d"], np.array([[9, 9], [1, 2]]), "v1")
        assert again[0].sid == (1, 2, 1) and not again[0].new  # known: keeps its ID whatever the codes
        assert again[1].sid == (1, 2, 2)
        store.retire(["a"])
        # a retired ID is never reused: the next item under (1, 2) gets suffix 3, not 0
        assert store.assign(["e"], np.array([[1, 2]]), "v1")[0].sid == (1, 2, 3)
        with pytest.raises(RegistryError, match="was retired"):
            store.assign(["a"], np.array([[5, 5]]), "v1")
        assert store.check() == []


def test_bad_input_is_named(tmp_path, registry_url):
    with IDRegistry(registry_url, create=True) as store:
        store.assign(["a"], np.array([[1, 2]]), "v1")
        with pytest.raises(InvalidInputError, match=r"\['x'\] appear more than once"):
            store.assign(["x", "x"], np.array([[1, 2], [1, 2]]), "v1")
        store.migrate(["a"], np.array([[1, 2]]), "v2")
        with pytest.raises(RegistryError, match="older than the registry's current version 'v2'"):
            store.assign(["b"], np.array([[1, 2]]), "v1")
        with pytest.raises(RegistryError, match="not the registry's current version"):
            store.assign(["b"], np.array([[1, 2]]), "v9")
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(RegistryError, match="not an rqgmm registry"):
        IDRegistry(other)
    (tmp_path / "text.db").write_text("hello, this is not a database at all" * 100)
    with pytest.raises(RegistryError, match="not an SQLite database|not an rqgmm registry"):
        IDRegistry(tmp_path / "text.db")
    newer = tmp_path / "newer.db"
    IDRegistry(newer, create=True).close()
    db = sqlite3.connect(newer)
    db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    db.commit()
    with pytest.raises(RegistryError, match="schema version 99 is newer"):
        IDRegistry(newer)
    with pytest.raises(RegistryError, match="'mysql' is not supported"):
        IDRegistry("mysql://host/db")
    with pytest.raises(RegistryError, match="cannot connect to the PostgreSQL registry"):
        IDRegistry("postgresql://nobody:secret@/nothing?host=/nonexistent-socket-dir", timeout=1)


def test_migrate_keeps_unchanged_ids_and_its_mapping_round_trips(registry_url):
    url = registry_url if "://" in registry_url else f"sqlite:///{registry_url}"
    with IDRegistry(url, create=True) as store:
        store.assign(["a", "b", "c"], np.array([[1, 2], [1, 2], [3, 4]]), "v1")
        first_seen = {item_id: seen for item_id, _, _, seen, _ in store.items()}
        mapping = store.migrate(["a", "b", "c"], np.array([[1, 2], [5, 5], [3, 4]]), "v2")
        # an item whose ID changed is still the same item: its first-seen time stays, updated moves
        assert {item_id: seen for item_id, _, _, seen, _ in store.items()} == first_seen
        assert all(version == "v2" for _, _, version, _, _ in store.items())
        assert mapping == {"a": ("1-2-0", "1-2-0"), "b": ("1-2-1", "5-5-0"), "c": ("3-4-0", "3-4-0")}
        assert store.mapping("v1", "v2") == mapping
        assert store.current_version == "v2" and store.check() == []
        # the mapping takes every old ID to the item's new ID: a CTR model can remap its rows with it
        old_to_new = {old: new for old, new in mapping.values()}
        assert sorted(old_to_new.values()) == sorted(sid for _, sid, *_ in store.items())


_WORKER = textwrap.dedent("""
    import sys, numpy as np
    from rqgmm.registry import IDRegistry
    path, start = sys.argv[1], int(sys.argv[2])
    store = IDRegistry(path, create=True)
    for batch in range(20):
        ids = [f"p{start}-{batch}-{i}" for i in range(10)]
        store.assign(ids, np.zeros((10, 2), dtype=int), "v1")   # every item under one prefix
""")


def test_two_processes_assigning_at_once_never_share_an_id(registry_url):
    path = registry_url
    IDRegistry(path, create=True).close()
    workers = [subprocess.Popen([sys.executable, "-c", _WORKER, path, str(k)]) for k in range(2)]
    assert [w.wait(timeout=120) for w in workers] == [0, 0]
    with IDRegistry(path) as store:
        items = store.items()
        assert len(items) == 400 and len({sid for _, sid, *_ in items}) == 400
        assert sorted(int(sid.split("-")[-1]) for _, sid, *_ in items) == list(range(400))
        assert store.check() == []


def test_a_kill_mid_assign_leaves_the_registry_as_before(registry_url):
    path = registry_url
    with IDRegistry(path, create=True) as store:
        store.assign(["kept"], np.array([[1, 1]]), "v1")
    script = textwrap.dedent(f"""
        import os, numpy as np
        import rqgmm.registry as registry
        store = registry.IDRegistry({path!r})
        real = registry._SuffixAllocator.take
        calls = []
        def dying(self, prefix):
            calls.append(prefix)
            if len(calls) == 50:
                os._exit(9)   # killed inside the transaction, 49 items written but not committed
            return real(self, prefix)
        registry._SuffixAllocator.take = dying
        store.assign([f"n{{i}}" for i in range(100)], np.ones((100, 2), dtype=int), "v1")
    """)
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    with IDRegistry(path) as store:
        assert [item[0] for item in store.items()] == ["kept"] and store.check() == []


def test_command_line_assign_check_export(tmp_path, registry_url):
    X = np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32)
    write_matrix(tmp_path / "X.parquet", X, np.array([f"item{i}" for i in range(200)]), "id")
    np.save(tmp_path / "X.npy", X)
    RQKMeans(n_levels=2, codebook_size=4, random_state=0, progress=False).fit(X).save(tmp_path / "tok")
    runner = CliRunner()
    # a .npy has no item ids: its row numbers are not items' identities, so the registry refuses it
    refused = runner.invoke(main, ["registry", "assign", registry_url, str(tmp_path / "tok"),
                                   str(tmp_path / "X.npy")])
    assert refused.exit_code == 2 and "has no item ids" in refused.output
    if "://" not in registry_url:
        assert not (tmp_path / "r.db").exists()
    result = runner.invoke(main, ["registry", "assign", registry_url, str(tmp_path / "tok"),
                                  str(tmp_path / "X.parquet")])
    assert result.exit_code == 0 and "200 item(s): 200 new" in result.output, result.output
    again = runner.invoke(main, ["registry", "assign", registry_url, str(tmp_path / "tok"),
                                 str(tmp_path / "X.parquet")])
    assert "0 new, 200 known" in again.output
    assert "consistent: 200 active item(s)" in runner.invoke(main, ["registry", "check",
                                                                    registry_url]).output
    assert runner.invoke(main, ["registry", "export", registry_url, "-o",
                                str(tmp_path / "ids.parquet")]).exit_code == 0
    table = pq.read_table(tmp_path / "ids.parquet")
    assert table.num_rows == 200 and {"item_id", "level_0", "level_1", "suffix", "sid"} <= set(table.column_names)
    sids = table.column("sid").to_pylist()
    codes = load(tmp_path / "tok").encode(X)  # each exported ID is the item's codes plus its suffix
    for row, item in enumerate(table.column("item_id").to_pylist()):
        levels = [table.column(f"level_{j}")[row].as_py() for j in range(2)]
        suffix = table.column("suffix")[row].as_py()
        assert levels == codes[int(item[4:])].tolist() and sids[row] == "-".join(map(str, [*levels, suffix]))


def test_many_items_under_one_code_read_the_prefix_once(registry_url, monkeypatch):
    """20,000 identical embeddings share one code: their suffixes are allocated from one read of
    the prefix's taken suffixes (it used to be one query per item over a growing set, quadratic:
    85 s); the statements the assignment runs are counted, not timed."""
    with IDRegistry(registry_url, create=True) as store:
        store.assign(["retired-one"], np.array([[3, 3]]), "v1")
        store.retire(["retired-one"])  # suffix 0 under (3, 3) is never handed out again
        statements = []
        execute = store._db.execute
        monkeypatch.setattr(store._db, "execute", lambda sql, params=(): (statements.append(sql), execute(sql, params))[1])
        assigned = store.assign([f"i{k}" for k in range(20_000)], np.full((20_000, 2), 3), "v1")
        monkeypatch.undo()
        assert [a.sid[-1] for a in assigned] == list(range(1, 20_001)) and store.check() == []
        assert sum("FROM items WHERE prefix IN" in text for text in statements) == 1
        ids = [f"j{k}" for k in range(60_000)] + ["j17"]
        with pytest.raises(InvalidInputError, match=r"\['j17'\] appear more than once"):
            store.assign(ids, np.zeros((len(ids), 2), dtype=int), "v1")


def test_damaged_locked_or_missing_registries_are_named(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(main, ["registry", "export", str(tmp_path / "none.db"), "-o", str(tmp_path / "x.parquet")])
    assert missing.exit_code == 1 and "rqgmm registry init" in missing.output
    assert runner.invoke(main, ["registry", "init", str(tmp_path / "none.db")]).exit_code == 0  # the advice works
    with IDRegistry(tmp_path / "none.db") as store:
        assert store.items() == [] and store.check() == []
    for damage, message in (("UPDATE meta SET value='abc' WHERE key='schema_version'", "schema_version is 'abc'"),
                            ("DROP TABLE items", r"table\(s\) \['items'\] are missing")):
        path = tmp_path / f"{len(message)}.db"
        IDRegistry(path, create=True).close()
        with sqlite3.connect(path) as db:
            db.execute(damage)
        with pytest.raises(RegistryError, match=message):
            IDRegistry(path)
    holder = sqlite3.connect(tmp_path / "none.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's write lock, held
    with IDRegistry(tmp_path / "none.db", timeout=0.2) as store:
        with pytest.raises(RegistryError, match="held the registry's write lock for longer than the 0.2 s"):
            store.assign(["a"], np.zeros((1, 2), dtype=int), "v1")
    holder.execute("ROLLBACK")


def test_two_processes_creating_one_registry_at_once_both_succeed(registry_url):
    script = textwrap.dedent(f"""
        import sys
        from rqgmm.registry import IDRegistry
        with IDRegistry({registry_url!r}, create=True) as store:
            store.check()
    """)
    runs = [subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True) for _ in range(6)]
    errors = [run.communicate()[1] for run in runs]
    assert all(run.returncode == 0 for run in runs), errors
