"""GX expectation suites evaluated per Arrow batch (transforms.expectations).

Importing great_expectations takes seconds, so the suite under test is built once per module.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from connectors import records
from transforms.expectations import ExpectationSuite, ExpectationSuiteError, SuiteResult

DATA = Path(__file__).parent / "data" / "gx"
ORDERS = DATA / "orders.json"
REPO = Path(__file__).resolve().parents[1]

NOT_NULL = "expect_column_values_to_not_be_null(email)"
BETWEEN = "expect_column_values_to_be_between(amount, min_value=0, max_value=10000)"
REGEX = r"expect_column_values_to_match_regex(email, regex='^[^@\s]+@[^@\s]+\.[a-z]+$')"
IN_SET = "expect_column_values_to_be_in_set(status, value_set=['new', 'paid', 'shipped'])"
UNIQUE = "expect_column_values_to_be_unique(order_id)"
LENGTHS = "expect_column_value_lengths_to_be_between(country, min_value=2, max_value=2)"


def orders_table() -> pa.Table:
    """Each row breaks the expectations named in its comment (see tests/data/gx/orders.json)."""
    rows = [
        # order_id, email, amount, status, country
        (1, "a@x.com", 10.0, "new", "DE"),  # 0: valid
        (2, None, 20.0, "paid", "FR"),  # 1: email null
        (3, "b@x.com", -5.0, "new", "DE"),  # 2: amount below 0
        (4, "not-an-email", 30.0, "new", "US"),  # 3: regex
        (5, "c@x.com", 40.0, "lost", "US"),  # 4: status not in set
        (6, "d@x.com", 50.0, "paid", "USA"),  # 5: duplicate order_id + country too long
        (6, "e@x.com", 20000.0, None, None),  # 6: duplicate order_id + amount above max
        (8, "f@x.com", None, "shipped", "GB"),  # 7: null amount: not a failure
    ]
    names = ["order_id", "email", "amount", "status", "country"]
    return pa.table({name: [row[i] for row in rows] for i, name in enumerate(names)})


EXPECTED_ROW_FAILURES = {
    1: [NOT_NULL],
    2: [BETWEEN],
    3: [REGEX],
    4: [IN_SET],
    5: [UNIQUE, LENGTHS],
    6: [BETWEEN, UNIQUE],
}


@pytest.fixture(scope="module")
def suite() -> ExpectationSuite:
    loaded = ExpectationSuite.from_file(ORDERS)
    loaded.check_with_gx()
    return loaded


@pytest.fixture(scope="module")
def result(suite: ExpectationSuite) -> SuiteResult:
    table = records.with_positions(orders_table(), "orders.jsonl", range(1, 9))
    return suite.evaluate(table)


def write_suite(tmp_path: Path, content: object) -> Path:
    path = tmp_path / "suite.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


# -- loading ----------------------------------------------------------------------------------


def test_from_file_reads_name_and_columns(suite: ExpectationSuite) -> None:
    assert suite.name == "orders"
    assert suite.columns == {"order_id", "email", "amount", "status", "country"}


def test_bad_json_names_file_and_position(tmp_path: Path) -> None:
    path = write_suite(tmp_path, '{"name": "s",\n "expectations": [}')
    with pytest.raises(ExpectationSuiteError) as err:
        ExpectationSuite.from_file(path)
    assert str(path) in str(err.value)
    assert "not valid JSON" in str(err.value)
    assert "line 2" in str(err.value)


def test_missing_file_is_a_suite_error(tmp_path: Path) -> None:
    with pytest.raises(ExpectationSuiteError, match="cannot read the suite"):
        ExpectationSuite.from_file(tmp_path / "absent.json")


@pytest.mark.parametrize(
    ("expectation", "problem"),
    [
        ({"kwargs": {"column": "a"}}, 'missing "type"'),
        ({"type": "expect_column_to_exist", "kwargs": ["a"]}, '"kwargs" must be an object'),
        ({"type": "column_exists", "kwargs": {}}, 'starting with "expect_"'),
        ("expect_column_to_exist", "an expectation is an object"),
        ({"type": "expect_column_to_exist", "kwargs": {"column": 3}}, '"column" must be'),
    ],
)
def test_structural_errors_name_file_and_index(
    tmp_path: Path, expectation: object, problem: str
) -> None:
    valid = {"type": "expect_column_to_exist", "kwargs": {"column": "a"}}
    path = write_suite(tmp_path, {"name": "s", "expectations": [valid, expectation]})
    with pytest.raises(ExpectationSuiteError) as err:
        ExpectationSuite.from_file(path)
    message = str(err.value)
    assert message.startswith(f"{path}: expectations[1]: ")
    assert problem in message
    assert err.value.index == 1


def test_expectations_must_be_a_list(tmp_path: Path) -> None:
    path = write_suite(tmp_path, {"name": "s", "expectations": {"type": "expect_x"}})
    with pytest.raises(ExpectationSuiteError, match='"expectations" must be a list'):
        ExpectationSuite.from_file(path)


def test_suite_parameters_are_rejected_when_loading() -> None:
    suite = {
        "name": "s",
        "expectations": [
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "a", "min_value": {"$PARAMETER": "low"}},
            }
        ],
    }
    with pytest.raises(ExpectationSuiteError, match=r"expectations\[0\].*\$PARAMETER"):
        ExpectationSuite(suite)


def test_loading_does_not_import_great_expectations() -> None:
    code = (
        "import sys\n"
        "from transforms.expectations import ExpectationSuite\n"
        f"suite = ExpectationSuite.from_file({str(ORDERS)!r})\n"
        "assert suite.columns\n"
        "assert 'great_expectations' not in sys.modules, 'GX was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_unknown_type_suggests_closest_names(suite: ExpectationSuite) -> None:
    typo = {
        "name": "s",
        "expectations": [
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}},
            {"type": "expect_column_values_to_be_betwen", "kwargs": {"column": "a"}},
        ],
    }
    loaded = ExpectationSuite(typo, origin="typo.json")  # structure is fine without GX
    with pytest.raises(ExpectationSuiteError) as err:
        loaded.check_with_gx()
    message = str(err.value)
    assert message.startswith("typo.json: expectations[1]: unknown expectation type")
    assert "did you mean expect_column_values_to_be_between" in message


def test_invalid_kwargs_are_reported_with_a_hint(suite: ExpectationSuite) -> None:
    misspelt = {
        "name": "s",
        "expectations": [{"type": "expect_column_values_to_not_be_null", "kwargs": {"colum": "a"}}],
    }
    with pytest.raises(ExpectationSuiteError) as err:
        ExpectationSuite(misspelt, origin="s.json").check_with_gx()
    message = str(err.value)
    assert message.startswith("s.json: expectations[0]: invalid kwargs")
    assert "colum: unknown kwarg (did you mean 'column'?)" in message
    assert "column: field required" in message


def test_gx_0x_keys_are_accepted() -> None:
    legacy = {
        "expectation_suite_name": "legacy",
        "expectations": [
            {"expectation_type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}}
        ],
    }
    loaded = ExpectationSuite(legacy)
    loaded.check_with_gx()
    assert loaded.name == "legacy"
    result = loaded.evaluate(pa.table({"a": [1, None, 3]}))
    assert result.failed_expectation_per_row == {1: ["expect_column_values_to_not_be_null"]}


def test_columns_covers_pair_and_multicolumn_kwargs() -> None:
    loaded = ExpectationSuite(
        {
            "name": "s",
            "expectations": [
                {
                    "type": "expect_column_pair_values_to_be_equal",
                    "kwargs": {"column_A": "a", "column_B": "b"},
                },
                {
                    "type": "expect_compound_columns_to_be_unique",
                    "kwargs": {"column_list": ["c", "d"]},
                },
                {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
            ],
        }
    )
    assert loaded.columns == {"a", "b", "c", "d"}


# -- evaluation -------------------------------------------------------------------------------


def test_row_level_failures_map_to_the_failing_rows(result: SuiteResult) -> None:
    assert result.row_failures == EXPECTED_ROW_FAILURES
    assert result.failed_expectation_per_row == {
        row: [reason.split("(")[0] for reason in reasons]
        for row, reasons in EXPECTED_ROW_FAILURES.items()
    }


def test_nulls_fail_only_not_null(result: SuiteResult) -> None:
    # row 7 has a null amount and row 6 a null status and country: GX skips missing values
    # in every column map expectation except the null checks.
    assert 7 not in result.row_failures
    assert result.row_failures[6] == [BETWEEN, UNIQUE]


def test_table_level_expectations_are_left_to_the_dataset_judgement(
    suite: ExpectationSuite, result: SuiteResult
) -> None:
    # mean and row count describe the whole dataset: no per-batch outcome, no row blamed
    assert [t for _, t, _ in suite.dataset_level] == [
        "expect_column_mean_to_be_between",
        "expect_table_row_count_to_be_between",
    ]
    judged = {o.expectation_type for o in result.outcomes}
    assert "expect_column_mean_to_be_between" not in judged
    reported = {t for types in result.failed_expectation_per_row.values() for t in types}
    assert "expect_column_mean_to_be_between" not in reported
    assert not result.success


def test_outcomes_follow_suite_order_and_are_json_serialisable(result: SuiteResult) -> None:
    assert [o.expectation_type for o in result.outcomes] == [
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_between",
        "expect_column_values_to_match_regex",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_be_unique",
        "expect_column_value_lengths_to_be_between",
    ]
    between = result.outcomes[1]
    assert (between.column, between.element_count, between.unexpected_count) == ("amount", 8, 2)
    assert between.kwargs == {"column": "amount", "min_value": 0.0, "max_value": 10000.0}
    json.dumps([o.__dict__ for o in result.outcomes])


def test_a_compiled_suite_runs_without_importing_great_expectations() -> None:
    code = (
        "import sys, pyarrow as pa\n"
        "from transforms.expectations import ExpectationSuite\n"
        f"suite = ExpectationSuite.from_file({str(ORDERS)!r})\n"
        "suite.check_with_gx()\n"
        "table = pa.table({'order_id': [1, 1], 'email': ['a@x.io', None], 'amount': [1.0, -1.0],"
        " 'status': ['new', 'old'], 'country': ['DE', 'DEU']})\n"
        "result = suite.evaluate(table)\n"
        "assert result.row_failures, result\n"
        "assert not any(m.startswith('great_expectations') for m in sys.modules), 'GX imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_an_expectation_without_an_arrow_kernel_still_runs_in_gx() -> None:
    mixed = ExpectationSuite(
        {
            "name": "s",
            "expectations": [
                {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}},
                {"type": "expect_column_values_to_be_increasing", "kwargs": {"column": "a"}},
            ],
        }
    )
    assert mixed.needs_gx() == (1,)
    result = mixed.evaluate(pa.table({"a": [1, 3, 2, None]}))
    assert result.failed_expectation_per_row == {
        2: ["expect_column_values_to_be_increasing"],
        3: ["expect_column_values_to_not_be_null"],
    }


def test_position_columns_are_hidden_from_gx(suite: ExpectationSuite, result: SuiteResult) -> None:
    plain = suite.evaluate(orders_table())
    assert plain.row_failures == result.row_failures

    exact_columns = ExpectationSuite(
        {
            "name": "columns",
            "expectations": [
                {
                    "type": "expect_table_columns_to_match_set",
                    "kwargs": {"column_set": ["order_id", "email", "amount", "status", "country"]},
                }
            ],
        }
    )
    with_positions = records.with_positions(orders_table(), "orders.jsonl", range(8))
    assert exact_columns.evaluate(with_positions).success


def test_suite_naming_a_position_column_is_rejected() -> None:
    hidden = {
        "name": "s",
        "expectations": [
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "_bw_offset"}}
        ],
    }
    with pytest.raises(ExpectationSuiteError, match="internal position column"):
        ExpectationSuite(hidden)


def test_pickled_suite_evaluates_the_same(suite: ExpectationSuite, result: SuiteResult) -> None:
    restored = pickle.loads(pickle.dumps(suite))
    assert restored.evaluate(orders_table()).row_failures == result.row_failures
    assert len(pickle.dumps(suite)) < 20_000  # the GX context is not shipped to workers


def test_rows_are_positions_even_for_a_table_with_a_pandas_index(suite: ExpectationSuite) -> None:
    # A table converted from a sliced, indexed DataFrame carries pandas metadata that would
    # restore index labels 10..17 instead of positions 0..7.
    frame = orders_table().to_pandas()
    frame.index = pd.RangeIndex(10, 18)
    table = pa.Table.from_pandas(frame)
    assert suite.evaluate(table).row_failures == EXPECTED_ROW_FAILURES


def test_every_failing_row_is_reported_beyond_gx_result_caps() -> None:
    # GX caps unexpected_list at 200 values; the row indexes must not be capped.
    positive = ExpectationSuite(
        {
            "name": "s",
            "expectations": [
                {
                    "type": "expect_column_values_to_be_between",
                    "kwargs": {"column": "n", "min_value": 0, "mostly": 0.1},
                }
            ],
        }
    )
    values = [-1 if i % 4 else 1 for i in range(1000)]
    result = positive.evaluate(pa.table({"n": values}))
    assert sorted(result.row_failures) == [i for i in range(1000) if i % 4]
    # `mostly` makes the expectation pass, but the failing rows are still rejected.
    assert result.outcomes[0].success
    assert result.outcomes[0].unexpected_count == 750


def test_expectation_gx_cannot_evaluate_reports_an_error_and_rejects_nothing() -> None:
    missing = ExpectationSuite(
        {
            "name": "s",
            "expectations": [
                {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "gone"}},
                {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}},
            ],
        }
    )
    result = missing.evaluate(pa.table({"a": [1, None]}))
    assert result.row_failures == {1: ["expect_column_values_to_not_be_null(a)"]}
    gone = result.outcomes[0]
    assert not gone.success
    assert 'column "gone"' in gone.error
    assert result.outcomes[1].error is None


def test_concurrent_evaluations_each_get_their_own_rows(suite: ExpectationSuite) -> None:
    # GX's pandas engine keeps the batch under one fixed id; without serialisation two threads
    # evaluating at once were measured getting each other's rows.
    tables = [orders_table().slice(start) for start in range(4)]
    expected = [suite.evaluate(table).row_failures for table in tables]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda t: suite.evaluate(t).row_failures, tables * 3))
    assert got == expected * 3
