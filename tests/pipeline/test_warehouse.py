"""pipeline.warehouse on DuckDB and PostgreSQL: bulk writes and reads, atomic
replace, quoting, parameter binding and URL handling."""

from __future__ import annotations

import datetime as dt
import decimal
import os

import pandas as pd
import pyarrow as pa
import pytest

from features.contract import INPUT_TABLES
from pipeline.warehouse import Warehouse, WarehouseError, redact_url
from tests import factories as f
from tests.conftest import _postgres_warehouse, spark_warehouse


@pytest.fixture(
    params=[
        "duckdb",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("spark", marks=pytest.mark.spark),
    ]
)
def wh(request):
    """The same test on DuckDB, a real PostgreSQL server and a local Spark."""
    if request.param == "duckdb":
        with Warehouse("duckdb:///:memory:") as wh:
            yield wh
    elif request.param == "postgres":
        yield from _postgres_warehouse()
    else:
        yield from spark_warehouse(request.getfixturevalue("spark_url"))


def not_on_spark(wh: Warehouse, why: str) -> None:
    if wh.dialect == "spark":
        pytest.skip(f"Spark: {why}")


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Engine-neutral values: timestamps as datetime64[us], booleans as
    nullable booleans, numbers as float64, text as object with None."""
    out = frame.reset_index(drop=True).copy()
    for col in out.columns:
        s = out[col]
        if pd.api.types.is_datetime64_any_dtype(s) or s.map(lambda v: isinstance(v, dt.date)).any():
            out[col] = pd.to_datetime(s).astype("datetime64[us]")
        elif pd.api.types.is_bool_dtype(s) or s.map(lambda v: isinstance(v, bool)).any():
            out[col] = s.astype("boolean")
        elif pd.api.types.is_numeric_dtype(s):
            out[col] = s.astype("float64")
        else:
            out[col] = s.astype(object).where(s.notna(), None)
    return out


def contract_frames() -> dict[str, pd.DataFrame]:
    """One frame per contract input table, with NULLs in every nullable
    column, booleans, microsecond timestamps and real DATE columns."""
    accounts = f.accounts("a1", "a2", "a3", created_at="2024-01-02 03:04:05.123456")
    accounts.loc[1, ["account_name", "segment", "csm_owner"]] = None
    accounts.loc[2, "created_at"] = pd.Timestamp("1999-12-31 23:59:59.999999")
    subs = f.subscriptions(
        [
            ("s1", "a1", "2024-01-01", "2025-01-01", 100.5, 10, True, "Growth"),
            ("s2", "a2", "2024-02-29", None, 0, 3, False, None),
            ("s3", "a3", "1970-01-01", "9999-12-31", 1e9, 1, None, "Scale"),
        ]
    )
    subs["start_date"] = subs["start_date"].dt.date  # DATE columns, not timestamps
    subs["end_date"] = [d.date() if pd.notna(d) else None for d in subs["end_date"]]
    subs.loc[2, "seats"] = None
    usage = f.events(
        [
            ("a1", "2024-05-01 10:00:00.000001", "login", "u1"),
            ("a2", "2024-05-01 23:59:59.999999", "report created", None, 2.5),
            ("a3", "2024-05-02", "export", "u3", 0),
        ]
    )
    tickets = f.tickets(
        [
            ("t1", "a1", "2024-05-01 08:00:00.5", "2024-05-02 09:30:00.25", "high", 4),
            ("t2", "a2", "2024-05-03", None, None),
        ]
    )
    nps = f.nps([("a1", "2024-05-01 12:00:00.000123", 10), ("a2", "2024-05-02", 0, None)])
    return dict(accounts=accounts, subscriptions=subs, usage_events=usage, support_tickets=tickets, nps_responses=nps)


@pytest.mark.parametrize("table", list(contract_frames()))
def test_contract_tables_round_trip(wh, table):
    frame = contract_frames()[table]
    assert list(frame.columns) == list(INPUT_TABLES[table].column_names)
    wh.write_table(table, frame)
    back = wh.read_table(table)
    assert list(back.columns) == list(frame.columns)
    key = frame.columns[0] if table != "nps_responses" else "responded_at"
    back = back.sort_values(key).reset_index(drop=True)
    frame = frame.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(normalise(back), normalise(frame))


def test_round_trip_keeps_microseconds_nulls_and_booleans(wh):
    frame = pd.DataFrame(
        {
            "ts": [pd.Timestamp("2024-01-02 03:04:05.123456"), pd.NaT, pd.Timestamp("2024-01-01 00:00:00.000001")],
            "flag": [True, None, False],
            "day": [dt.date(2024, 2, 29), None, dt.date(1970, 1, 1)],
            "n": pd.array([1, None, -3], dtype="Int64"),
            "x": [0.1, None, -0.0],
            "s": ["", None, 'a,b\n"c"'],  # empty string is not NULL; CSV-special characters survive
        }
    )
    wh.write_table("mixed", frame)
    back = wh.read_table("mixed")
    assert back["ts"].tolist()[0] == pd.Timestamp("2024-01-02 03:04:05.123456")
    assert back["ts"].tolist()[2] == pd.Timestamp("2024-01-01 00:00:00.000001")
    assert back["s"].tolist()[0] == "" and pd.isna(back["s"].tolist()[1])
    pd.testing.assert_frame_equal(normalise(back), normalise(frame))
    assert wh.row_count("mixed") == 3


def test_append_adds_rows_by_name_and_creates_the_table(wh):
    wh.write_table("events", pd.DataFrame({"a": [1], "b": ["x"]}), mode="append")  # creates it
    wh.write_table("events", pd.DataFrame({"b": ["y", "z"], "a": [2, 3]}), mode="append")  # other order
    wh.write_table("events", pd.DataFrame({"a": [4]}), mode="append")  # a missing column is NULL
    back = wh.read_table("events").sort_values("a").reset_index(drop=True)
    assert back["a"].tolist() == [1, 2, 3, 4]
    assert back["b"].tolist()[:3] == ["x", "y", "z"] and pd.isna(back["b"].iloc[3])


def test_an_all_null_column_can_be_appended_to_later(wh):
    # pandas gives an all-None column no type: it must become a column that
    # later rows can fill (text, on both engines)
    wh.write_table("batches", pd.DataFrame({"n": [1], "note": [None]}))
    assert wh.column_types("batches")["note"] in ("varchar", "text")
    wh.write_table("batches", pd.DataFrame({"n": [2], "note": ["second"]}), mode="append")
    back = wh.read_table("batches").sort_values("n")
    assert pd.isna(back["note"].iloc[0]) and back["note"].iloc[1] == "second"


def test_replace_swaps_the_whole_table(wh):
    wh.write_table("t", pd.DataFrame({"a": [1, 2, 3]}))
    wh.write_table("t", pd.DataFrame({"b": ["only"]}))
    assert wh.read_table("t").to_dict("list") == {"b": ["only"]}


def test_a_failed_transaction_leaves_the_previous_table(wh):
    not_on_spark(wh, "no multi-statement transactions (write-back replaces partitions instead)")
    wh.write_table("t", pd.DataFrame({"a": [1, 2]}))
    with pytest.raises(RuntimeError, match="boom"):
        with wh.transaction():
            wh.write_table("t", pd.DataFrame({"a": [9]}))
            wh.write_table("other", pd.DataFrame({"a": [9]}))
            raise RuntimeError("boom")
    assert wh.read_table("t").to_dict("list") == {"a": [1, 2]}
    assert not wh.table_exists("other")


def _failing_frame(dialect: str) -> pd.DataFrame:
    """A frame the engine rejects while writing, after the replace has begun."""
    if dialect == "postgres":  # PostgreSQL text cannot hold NUL: COPY fails on the second row
        return pd.DataFrame({"a": ["fine", "bad\x00byte"]})
    # DuckDB cannot read a 256-bit decimal from Arrow
    return pd.DataFrame({"a": pd.array([decimal.Decimal("1.5")], dtype=pd.ArrowDtype(pa.decimal256(60, 2)))})


def test_a_failed_replace_leaves_the_previous_table(wh):
    wh.write_table("t", pd.DataFrame({"a": ["old 1", "old 2"]}))
    with pytest.raises(WarehouseError, match="Writing t"):
        wh.write_table("t", _failing_frame(wh.dialect))
    assert wh.read_table("t").to_dict("list") == {"a": ["old 1", "old 2"]}
    # and the connection is still usable
    wh.write_table("t", pd.DataFrame({"a": ["new"]}))
    assert wh.read_table("t").to_dict("list") == {"a": ["new"]}


def test_publish_swaps_tables_atomically(wh):
    wh.write_table("scores", pd.DataFrame({"v": [1]}))
    wh.write_table("reasons", pd.DataFrame({"v": [1]}))
    wh.write_table("scores__new", pd.DataFrame({"v": [2]}))
    # one staging table is missing: nothing is swapped
    with pytest.raises(WarehouseError):
        wh.publish({"scores__new": "scores", "reasons__new": "reasons"})
    assert wh.read_table("scores").to_dict("list") == {"v": [1]}
    assert wh.table_exists("scores__new")

    wh.write_table("reasons__new", pd.DataFrame({"v": [2]}))
    wh.publish({"scores__new": "scores", "reasons__new": "reasons"})
    assert wh.read_table("scores").to_dict("list") == {"v": [2]}
    assert wh.read_table("reasons").to_dict("list") == {"v": [2]}
    assert not wh.table_exists("scores__new") and not wh.table_exists("reasons__new")


ODD_TABLE = 'my "odd" table; drop'
ODD_COLUMNS = ["with space", 'quote"d', "Mixed Case", "select"]


def test_identifiers_with_spaces_and_quotes_are_quoted(wh):
    not_on_spark(wh, "table names are letters, digits and _ (test_warehouse_spark.py checks the error)")
    frame = pd.DataFrame({c: [i, i + 10] for i, c in enumerate(ODD_COLUMNS)})
    wh.write_table(ODD_TABLE, frame)
    assert wh.table_exists(ODD_TABLE)
    assert not wh.table_exists("my")
    assert list(wh.column_types(ODD_TABLE)) == ODD_COLUMNS
    assert wh.row_count(ODD_TABLE) == 2
    assert wh.read_table(ODD_TABLE, columns=['quote"d', "select"]).sort_values("select").to_dict("list") == {
        'quote"d': [1, 11],
        "select": [3, 13],
    }
    wh.write_table(ODD_TABLE, frame, mode="append")
    assert wh.row_count(ODD_TABLE) == 4
    assert wh.quote('a"b') == '"a""b"'
    wh.drop(ODD_TABLE)
    assert not wh.table_exists(ODD_TABLE)


TRICKY = 'O\'Brien "the" 100% $1 %s %(x)s ; DROP TABLE people; --'


def test_values_are_bound_not_pasted(wh):
    assert wh.scalar("SELECT $v", {"v": TRICKY}) == TRICKY
    wh.write_table("people", pd.DataFrame({"name": [TRICKY, "plain"], "n": [1, 2]}))
    assert wh.scalar("SELECT n FROM people WHERE name = $name", {"name": TRICKY}) == 1
    # a literal % in the SQL text next to a bound value
    assert wh.scalar("SELECT COUNT(*) FROM people WHERE name LIKE '%Brien%' AND n = $n", {"n": 1}) == 1
    assert wh.table_exists("people")


def test_bound_values_of_several_types(wh):
    got = wh.query(
        "SELECT $i AS i, $f AS f, $b AS b, $d AS d, $t AS t",
        {"i": 7, "f": 0.5, "b": True, "d": dt.date(2024, 2, 29), "t": pd.Timestamp("2024-01-02 03:04:05")},
    )
    row = got.iloc[0]
    assert (row["i"], row["f"], bool(row["b"])) == (7, 0.5, True)
    assert pd.Timestamp(row["d"]) == pd.Timestamp("2024-02-29")
    assert pd.Timestamp(row["t"]) == pd.Timestamp("2024-01-02 03:04:05")


def test_parameters_the_sql_does_not_use_are_ignored(wh):
    # "$ab" must not count as a use of "a"
    assert wh.scalar("SELECT $ab", {"a": 1, "ab": 2, "unused": 3}) == 2


def test_the_connection_is_usable_after_any_statement(wh):
    not_on_spark(wh, "no DELETE on Parquet tables")
    wh.write_table("t", pd.DataFrame({"a": [1, 2]}))
    wh.execute("SELECT * FROM t")  # a statement whose rows nobody fetches
    wh.write_table("t", pd.DataFrame({"a": [3]}), mode="append")
    wh.execute("DELETE FROM t WHERE a = $a", {"a": 1})
    wh.write_table("t", pd.DataFrame({"a": [4]}), mode="append")
    assert sorted(wh.read_table("t")["a"]) == [2, 3, 4]


def test_errors_are_warehouse_errors(wh):
    with pytest.raises(WarehouseError):
        wh.execute("SELECT * FROM no_such_table")
    with pytest.raises(WarehouseError):
        wh.query("SELEC 1")
    assert wh.scalar("SELECT 1") == 1  # still usable afterwards


@pytest.mark.parametrize(
    "url, shown",
    [
        ("postgresql://churn:s3cret@db.example.com:5432/prod", "postgresql://churn:***@db.example.com:5432/prod"),
        ("postgresql://churn:p%40ss%3Aword@db/prod", "postgresql://churn:***@db/prod"),
        ("postgresql+psycopg://u:pw@h/db", "postgresql+psycopg://u:***@h/db"),
        (
            "postgresql://churn@db/prod?sslmode=require&password=s3cret",
            "postgresql://churn@db/prod?sslmode=require&password=***",
        ),
        ("postgresql://churn@db/prod", "postgresql://churn@db/prod"),
        ("duckdb:///data/warehouse.duckdb", "duckdb:///data/warehouse.duckdb"),
    ],
)
def test_redact_url_hides_the_password(url, shown):
    assert redact_url(url) == shown
    assert "s3cret" not in redact_url(url) and "p%40ss" not in redact_url(url)


def test_repr_does_not_show_the_password(duckdb_wh):
    assert repr(duckdb_wh) == "Warehouse('duckdb:///:memory:')"


@pytest.mark.parametrize("url", ["mysql://u:s3cret@host/db", "sqlite:///tmp/x.db", "warehouse.duckdb", ""])
def test_unknown_url_scheme_is_an_error(url):
    with pytest.raises(WarehouseError, match="Unsupported warehouse URL scheme") as err:
        Warehouse(url)
    assert "s3cret" not in str(err.value)


@pytest.mark.postgres
def test_failed_postgres_login_does_not_show_the_password(pg_wh):
    url = os.environ["CHURN_TEST_POSTGRES_URL"]
    user = url.split("://", 1)[1].split(":", 1)[0]
    wrong = f"postgresql://{user}:Wrong-Pass-123@" + url.rsplit("@", 1)[1]
    with pytest.raises(WarehouseError, match="Cannot connect") as err:
        Warehouse(wrong)
    assert "Wrong-Pass-123" not in str(err.value)


def test_duckdb_file_warehouse_persists(tmp_path):
    url = f"duckdb:///{tmp_path}/sub/dir/warehouse.duckdb"
    with Warehouse(url, create=True) as wh:
        wh.write_table("t", pd.DataFrame({"a": [1]}))
    with Warehouse(url) as wh:
        assert wh.read_table("t").to_dict("list") == {"a": [1]}


def test_temporary_tables_are_visible_to_the_catalog_helpers(wh):
    wh.write_table("scratch", pd.DataFrame({"a": [1], "b": ["x"]}), temporary=True)
    assert wh.table_exists("scratch")
    assert list(wh.column_types("scratch")) == ["a", "b"]
    wh.write_table("scratch", pd.DataFrame({"a": [2]}), temporary=True)  # replace a temp table
    assert wh.read_table("scratch").to_dict("list") == {"a": [2]}


def test_duckdb_settings_come_from_the_url_query(tmp_path):
    """Memory can be bounded per run: ?memory_limit=...&threads=... are DuckDB settings."""
    with Warehouse(f"duckdb://{tmp_path / 'w.duckdb'}?memory_limit=1GB&threads=1", create=True) as wh:
        row = wh.query("SELECT current_setting('memory_limit') AS m, current_setting('threads') AS t").iloc[0]
    assert row["m"].startswith("953") and str(row["t"]) == "1"
