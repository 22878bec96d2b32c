"""The edges a real calendar has, for every shape of feature set: days without races, a day of
one race with one entry, the first partition (no history at all), a history window with no
races in it, and a ranged run that starts and ends on race-free days."""

import datetime as dt

import pandas as pd
import pyarrow.parquet as pq
import pytest
from dagster import instance_for_test
from dagster._core.storage.partition_status_cache import AssetPartitionStatus

from feature_assets.core.feature_set import per_day, per_race
from feature_assets.feature_sets.race_context import race_context
from feature_assets.feature_sets.race_features import race_features
from feature_assets.feature_sets.racer_form import racer_form
from feature_assets.io import synthetic
from feature_assets.io.storage import DailyParquetStorage
from feature_assets.training import data as training_data
from tests.conftest import FIRST_DAY
from tests.helpers import materialize_days, partition_status

RACE_FREE = {1, 2, 3, 4, 13, 14}  # day offsets; 13 and 14 end the ranged run
ONE_ENTRY_DAY = 5  # one race of one entry, after four race-free days
LAST = 14


@per_race(history_days=3, columns={"starts_3d": "int", "last_finish": "int"})
def users_per_race(race, history):
    """Written as a user would: loops over the race's entries and each racer's history."""
    rows = []
    for entry in race.each_entry():
        past = history.racer(entry.racer_id).last(3)
        rows.append(
            {
                "starts_3d": len(past),
                "last_finish": past[0]["finish_position"] if past else None,
            }
        )
    return rows


@per_day(history_days=3, columns={"venue_races_3d": "int", "lane_share": "float"})
def users_per_day(day, history):
    """Written as a user would: the history's frames, one day at a time."""
    races_by_venue = history.races.groupby("venue_code").size()
    entries = day.entries
    return pd.DataFrame(
        {
            "venue_races_3d": entries["venue_code"].map(races_by_venue).fillna(0),
            "lane_share": entries["lane"] / entries.groupby("race_id")["lane"].transform("sum"),
        }
    )


SETS = [racer_form, race_context, race_features, users_per_race, users_per_day]


def _day(offset: int) -> str:
    return (FIRST_DAY + dt.timedelta(days=offset)).isoformat()


def _calendar() -> synthetic.SyntheticData:
    data = synthetic.generate(FIRST_DAY, days=LAST - 1, races_per_day=3, seed=5)
    offsets = (data.races["race_date"] - pd.Timestamp(FIRST_DAY)).dt.days
    races = data.races[~offsets.isin(RACE_FREE)]
    one = data.races[offsets == ONE_ENTRY_DAY]["race_id"]
    races = races[~races["race_id"].isin(one.iloc[1:])]
    entries = data.entries[data.entries["race_id"].isin(races["race_id"])]
    entries = entries[~(entries["race_id"].isin(one) & (entries["lane"] != 1))]
    return synthetic.SyntheticData(races.reset_index(drop=True), entries.reset_index(drop=True), {})


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """The first day alone (no history at all), then days 1..14 as one ranged run."""
    folder = tmp_path_factory.mktemp("calendar")
    url, storage = f"sqlite:///{folder}/source.sqlite", str(folder / "parquet")
    data = _calendar()
    synthetic.load(url, data)
    with instance_for_test() as instance:
        first = materialize_days(url, storage, instance, SETS, _day(0), _day(0))
        ranged = materialize_days(url, storage, instance, SETS, _day(1), _day(LAST))
        keys = [_day(offset) for offset in range(LAST + 1)]
        statuses = {s.name: partition_status(instance, s.name, keys) for s in SETS}
        yield first, ranged, statuses, DailyParquetStorage(storage), data


def test_every_shape_completes_every_day_and_is_recorded_materialised(stored):
    first, ranged, statuses, _, _ = stored
    assert first.success and ranged.success
    for name, by_day in statuses.items():
        assert set(by_day.values()) == {AssetPartitionStatus.MATERIALIZED}, (name, by_day)


@pytest.mark.parametrize("feature_set", SETS, ids=lambda s: s.name)
def test_a_race_free_day_is_an_empty_table_with_the_full_schema(stored, feature_set):
    storage = stored[3]
    for offset in sorted(RACE_FREE):
        path = storage.day_path(feature_set.name, _day(offset))
        assert pq.read_metadata(path).num_rows == 0, (feature_set.name, offset)
        frame = storage.read_days(feature_set.name, [_day(offset)])
        assert frame.empty
        assert list(frame.columns) == list(feature_set.output_columns)
        assert frame.dtypes.to_dict() == dict(feature_set.output_dtypes) | {
            "race_date": frame.dtypes["race_date"]  # read back as the partition's type
        }


@pytest.mark.parametrize("feature_set", SETS, ids=lambda s: s.name)
def test_days_with_races_have_one_row_per_entry(stored, feature_set):
    storage, data = stored[3], stored[4]
    with_races = [o for o in range(LAST + 1) if o not in RACE_FREE]
    frame = storage.read_days(feature_set.name, [_day(o) for o in with_races])
    per_day_rows = frame.groupby("race_date", observed=True).size()
    expected = data.entries.groupby("race_date").size()
    assert {str(d)[:10]: n for d, n in per_day_rows.items()} == {
        str(d)[:10]: n for d, n in expected.items()
    }
    assert per_day_rows[pd.Timestamp(_day(ONE_ENTRY_DAY))] == 1


def test_history_windows_see_nothing_where_there_were_no_races(stored):
    """Day 5's three-day window (days 2..4) is race-free; day 0 has no history at all."""
    storage = stored[3]
    per_race_rows = storage.read_days("users_per_race", [_day(0), _day(ONE_ENTRY_DAY)])
    assert (per_race_rows["starts_3d"] == 0).all()
    assert per_race_rows["last_finish"].isna().all()
    per_day_rows = storage.read_days("users_per_day", [_day(0), _day(ONE_ENTRY_DAY)])
    assert (per_day_rows["venue_races_3d"] == 0).all()
    form = storage.read_days("racer_form", [_day(0)])
    assert (form["motor_last10_starts"] == 0).all() and form["last5_avg_finish"].isna().all()


def test_training_data_reads_a_window_with_race_free_days(stored):
    """`training_data` refused such windows while a per-race set failed race-free days."""
    storage, generated = stored[3], stored[4]
    days = [_day(offset) for offset in range(LAST + 1)]
    window = training_data.days_to_read(storage, SETS, days)
    assert window.days == days and window.invalid_days == []
    table = training_data.assemble(storage, SETS, window.days, lambda day: "train")
    assert len(table) == len(generated.entries)


def test_read_features_gives_real_dates_and_only_the_days_asked(stored):
    from feature_assets import read_features

    storage = stored[3]
    frame = read_features("racer_form", "2024-01-05", dt.date(2024, 1, 9), storage.url)
    assert frame["race_date"].dtype == "datetime64[ns]"
    # 2024-01-05 is race-free; a categorical race_date raised on .min()
    assert frame["race_date"].min() == pd.Timestamp(_day(ONE_ENTRY_DAY))
    assert frame["race_date"].max() == pd.Timestamp("2024-01-09")
    assert list(frame.columns) == list(racer_form.output_columns)
    everything = read_features("racer_form", storage_url=storage.url)
    assert len(everything) == len(stored[4].entries)
    none = read_features("racer_form", _day(1), _day(4), storage.url)  # race-free days
    assert none.empty and list(none.columns) == list(racer_form.output_columns)
    with pytest.raises(KeyError, match="no feature set or raw asset named 'nope'"):
        read_features("nope", storage_url=storage.url)
