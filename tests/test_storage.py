"""Daily Parquet storage: hive layout, ranged writes, atomic replacement, clear misses."""

import os

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from feature_assets.io import storage as storage_module
from feature_assets.io.storage import DailyParquetStorage, DamagedDayError, MissingDaysError

DAYS = ["2024-01-01", "2024-01-02", "2024-01-03"]


def _frame(days_with_rows):
    rows = [
        {"race_id": i, "race_date": pd.Timestamp(day), "score": i / 3, "name": f"n{i}"}
        for i, day in enumerate(days_with_rows)
    ]
    frame = pd.DataFrame(rows)
    frame["race_id"] = frame["race_id"].astype("Int64")
    frame["name"] = frame["name"].astype("string")
    return frame


def test_a_range_is_written_day_by_day_without_the_partition_column(tmp_path):
    storage = DailyParquetStorage(str(tmp_path))
    frame = _frame(["2024-01-03", "2024-01-01", "2024-01-01"])
    storage.write_days("table", frame, DAYS)

    # beside the days only the hidden staging folder, which readers skip
    folders = sorted(os.listdir(tmp_path / "table"))
    assert folders == [".staging", *(f"race_date={day}" for day in DAYS)]
    assert os.listdir(tmp_path / "table" / ".staging") == []
    empty = pq.read_table(tmp_path / "table" / "race_date=2024-01-02" / "data.parquet")
    assert empty.num_rows == 0 and empty.schema.names == ["race_id", "score", "name"]
    assert empty.schema.field("name").type == pa.string()

    whole = ds.dataset(tmp_path / "table", partitioning="hive").to_table()
    assert whole.num_rows == 3
    counts = duckdb.sql(
        f"SELECT race_date, count(*) FROM read_parquet('{tmp_path}/table/*/*.parquet',"
        " hive_partitioning = true) GROUP BY race_date ORDER BY race_date"
    ).fetchall()
    assert [(str(day), n) for day, n in counts] == [("2024-01-01", 2), ("2024-01-03", 1)]


def test_reading_days_gives_the_frame_back_with_its_race_date(tmp_path):
    storage = DailyParquetStorage(f"file://{tmp_path}")
    frame = _frame(["2024-01-01", "2024-01-02", "2024-01-02"])
    storage.write_days("table", frame, DAYS)
    loaded = storage.read_days("table", ["2024-01-02", "2024-01-01"])
    pd.testing.assert_frame_equal(loaded, frame)
    assert storage.read_days("table", ["2024-01-03"]).empty


def test_rewriting_a_day_replaces_it(tmp_path):
    storage = DailyParquetStorage(str(tmp_path))
    storage.write_days("table", _frame(["2024-01-01", "2024-01-01"]), ["2024-01-01"])
    storage.write_days("table", _frame(["2024-01-01"]), ["2024-01-01"])
    assert len(storage.read_days("table", ["2024-01-01"])) == 1
    assert os.listdir(tmp_path / "table" / "race_date=2024-01-01") == ["data.parquet"]


def test_a_write_that_dies_halfway_leaves_the_old_day_whole(tmp_path, monkeypatch):
    storage = DailyParquetStorage(str(tmp_path))
    storage.write_days("table", _frame(["2024-01-01"] * 2), ["2024-01-01"])

    def dies_halfway(table, where, **kwargs):
        with open(where, "wb") as half:
            half.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(storage_module.pq, "write_table", dies_halfway)
    with pytest.raises(OSError, match="disk full"):
        storage.write_days("table", _frame(["2024-01-01"] * 5), ["2024-01-01"])
    monkeypatch.undo()

    assert len(storage.read_days("table", ["2024-01-01"])) == 2
    assert os.listdir(tmp_path / "table" / "race_date=2024-01-01") == ["data.parquet"]


def test_rows_outside_the_days_are_refused(tmp_path):
    storage = DailyParquetStorage(str(tmp_path))
    with pytest.raises(ValueError, match="rows dated 2024-01-03 lie outside"):
        storage.write_days("table", _frame(["2024-01-03"]), ["2024-01-01"])
    assert not (tmp_path / "table").exists()


def test_missing_days_are_named_as_ranges(tmp_path):
    storage = DailyParquetStorage(str(tmp_path))
    storage.write_days("table", _frame(["2024-01-02"]), ["2024-01-02"])
    wanted = ["2023-12-30", "2023-12-31", "2024-01-01", "2024-01-02", "2024-01-04"]
    with pytest.raises(MissingDaysError) as raised:
        storage.read_days("table", wanted)
    assert "4 day(s): 2023-12-30...2024-01-01, 2024-01-04" in str(raised.value)


@pytest.fixture
def stored_entries_day(tmp_path):
    """A real raw_race_entries day written by the storage, and the frame it holds."""
    import datetime as dt

    from feature_assets.io import synthetic

    data = synthetic.generate(dt.date(2024, 1, 1), days=1, races_per_day=12, seed=3)
    storage = DailyParquetStorage(str(tmp_path))
    storage.write_days("raw_race_entries", data.entries, ["2024-01-01"])
    return storage, data.entries


def _read_entries(storage):
    from feature_assets.defs.resources import stored_schema

    return storage.read_days("raw_race_entries", ["2024-01-01"], stored_schema("raw_race_entries"))


def test_a_flipped_byte_is_an_error_naming_the_day_never_other_values(stored_entries_day):
    storage, entries = stored_entries_day
    path = storage.day_path("raw_race_entries", "2024-01-01")
    original = open(path, "rb").read()
    pd.testing.assert_frame_equal(_read_entries(storage), entries)
    rng = __import__("random").Random(5)
    caught = 0
    for position in rng.sample(range(len(original)), 300):
        damaged = bytearray(original)
        damaged[position] ^= 1 << rng.randrange(8)
        with open(path, "wb") as file:
            file.write(damaged)
        try:
            got = _read_entries(storage)
        except DamagedDayError as err:
            assert "2024-01-01" in str(err) and path in str(err)
            caught += 1
            continue
        # a flip in bytes no value depends on (statistics, padding) reads the same rows
        pd.testing.assert_frame_equal(got, entries, obj=f"byte {position} flipped")
    assert caught > 150


def test_a_truncated_file_is_named(stored_entries_day):
    storage, _ = stored_entries_day
    path = storage.day_path("raw_race_entries", "2024-01-01")
    original = open(path, "rb").read()
    with open(path, "wb") as file:
        file.write(original[: len(original) // 2])
    with pytest.raises(DamagedDayError, match="raw_race_entries: damaged day file") as raised:
        _read_entries(storage)
    assert f"day 2024-01-01: file {path}" in str(raised.value)


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda t: t.drop_columns(["win_odds"]), "missing column win_odds"),
        (
            lambda t: t.rename_columns(["odds" if n == "win_odds" else n for n in t.column_names]),
            "missing column win_odds; unexpected column odds",
        ),
        (
            lambda t: t.set_column(
                t.schema.get_field_index("lane"), "lane", t["lane"].cast(pa.int32())
            ),
            "lane is int32, not int64",
        ),
    ],
)
def test_a_drifted_file_fails_rather_than_reading_nulls(stored_entries_day, change, problem):
    storage, _ = stored_entries_day
    path = storage.day_path("raw_race_entries", "2024-01-01")
    pq.write_table(change(pq.read_table(path)), path)
    with pytest.raises(DamagedDayError) as raised:
        _read_entries(storage)
    message = str(raised.value)
    assert problem in message and "raw_race_entries day 2024-01-01" in message and path in message


def test_a_day_is_never_replaced_by_an_older_snapshot(tmp_path):
    storage = DailyParquetStorage(str(tmp_path))
    old, new = _frame(["2024-01-01"] * 2), _frame(["2024-01-01"] * 3)
    frames = lambda frame: {"table": frame, "other": frame}  # noqa: E731
    assert storage.write_tables(frames(new), ["2024-01-01"], {"2024-01-01": 200.0}) == []
    # a run that read the source earlier writes last: the newer day stays
    assert storage.write_tables(frames(old), ["2024-01-01"], {"2024-01-01": 100.0}) == [
        "2024-01-01"
    ]
    for table in ("table", "other"):
        assert len(storage.read_days(table, ["2024-01-01"])) == 3
        assert storage.snapshot_at(table, "2024-01-01") == 200.0
    # a newer one (or the same snapshot again) replaces it
    assert storage.write_tables(frames(old), ["2024-01-01"], {"2024-01-01": 300.0}) == []
    assert len(storage.read_days("other", ["2024-01-01"])) == 2


def test_tables_of_a_day_are_written_together_or_not_at_all(tmp_path, monkeypatch):
    storage = DailyParquetStorage(str(tmp_path))
    days = ["2024-01-01", "2024-01-02"]
    storage.write_tables({"a": _frame(days), "b": _frame(days)}, days)
    real_write = storage_module.pq.write_table

    def disk_full_for_b(table, where, **kwargs):
        if "/b/" in where and "2024-01-03" in where:
            raise OSError(28, "No space left on device")
        real_write(table, where, **kwargs)

    monkeypatch.setattr(storage_module.pq, "write_table", disk_full_for_b)
    more = [*days, "2024-01-03"]
    with pytest.raises(OSError) as raised:
        storage.write_tables({"a": _frame(more * 2), "b": _frame(more * 2)}, more)
    monkeypatch.undo()
    assert "b day 2024-01-03: cannot write" in str(raised.value)
    assert "No space left on device" in str(raised.value)
    for table in ("a", "b"):  # nothing replaced, no day folder made, no temporary left
        assert len(storage.read_days(table, days)) == 2
        assert sorted(p.name for p in (tmp_path / table).iterdir()) == [
            ".staging",
            "race_date=2024-01-01",
            "race_date=2024-01-02",
        ]
        assert list((tmp_path / table / ".staging").iterdir()) == []


def test_temporaries_of_a_killed_writer_go_with_the_next_write_of_the_day(tmp_path):
    storage = DailyParquetStorage(str(tmp_path))
    storage.write_days("table", _frame(["2024-01-01"]), ["2024-01-01"])
    day_folder = tmp_path / "table" / "race_date=2024-01-01"
    leftovers = [
        tmp_path / "table" / ".staging" / "2024-01-01.dead.tmp",
        day_folder / ".data.parquet.dead.tmp",  # the layout of earlier versions
    ]
    live = tmp_path / "table" / ".staging" / "2024-01-01.live.tmp"  # a writer at work now
    for path in [*leftovers, live]:
        path.write_bytes(b"half")
    two_hours_ago = __import__("time").time() - 7200
    for path in leftovers:
        os.utime(path, (two_hours_ago, two_hours_ago))
    storage.write_days("table", _frame(["2024-01-01"]), ["2024-01-01"])
    assert [p.exists() for p in leftovers] == [False, False] and live.exists()


def test_outputs_of_an_input_replaced_since_it_was_read_are_not_written(tmp_path):
    from feature_assets.io.storage import ReadInputs

    storage = DailyParquetStorage(str(tmp_path))
    raw_days = ["2024-01-01", "2024-01-02"]
    storage.write_tables({"raw": _frame(raw_days)}, raw_days, dict.fromkeys(raw_days, 100.0))
    read = storage.read_days("raw", raw_days, _SCHEMA)
    assert read.attrs["snapshot_at"] == dict.fromkeys(raw_days, 100.0)
    # pandas deep-copies attrs into every derived frame: the read's times travel as one object
    derived = read[read["race_date"] > pd.Timestamp("2024-01-01")].copy()
    assert derived.attrs["snapshot_at"] is read.attrs["snapshot_at"]
    # another run stores a newer snapshot of the second day after this run read it
    storage.write_tables({"raw": _frame(["2024-01-02"])}, ["2024-01-02"], {"2024-01-02": 150.0})
    inputs = ReadInputs("raw", read.attrs["snapshot_at"], readers=lambda day: [day])
    skipped = storage.write_tables({"out": _frame(raw_days)}, raw_days, inputs=inputs)
    assert skipped == ["2024-01-02"]
    assert sorted(p.name for p in (tmp_path / "out").glob("race_date=*")) == [
        "race_date=2024-01-01"
    ]


_SCHEMA = pa.schema(
    [
        ("race_id", pa.int64()),
        ("race_date", pa.timestamp("ns")),
        ("score", pa.float64()),
        ("name", pa.string()),
    ]
)
