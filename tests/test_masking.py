"""Behaviour of the PII masking strategies, as a pipeline user would see it."""

from __future__ import annotations

import decimal
import hashlib
import hmac
import pickle

import pyarrow as pa
import pytest

from connectors.records import OFFSET_COLUMN, SOURCE_COLUMN, with_positions
from transforms.masking import (
    STRATEGIES,
    MaskError,
    MaskRule,
    check_rule,
    mask_array,
    mask_table,
)

SALT = b"pepper-for-tests"
KEY = b"k3y-material-for-tests-0123456789"


def masked(values: list[object], strategy: str, type_: pa.DataType | None = None, **options):
    return mask_array(pa.array(values, type_), strategy, **options).to_pylist()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hmac_hex(key: bytes, data: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()


# --- redact ----------------------------------------------------------------------------------


def test_redact_replaces_every_value_and_keeps_nulls():
    assert masked(["a", None, ""], "redact") == ["[REDACTED]", None, "[REDACTED]"]
    assert masked([1, None], "redact", replacement="x") == ["x", None]


def test_redact_accepts_nested_columns():
    result = masked([{"a": 1}, None], "redact")
    assert result == ["[REDACTED]", None]


# --- partial ---------------------------------------------------------------------------------


def test_partial_keeps_last_four_of_a_card_number():
    assert masked(["4111111111111111", None], "partial") == ["************1111", None]


def test_partial_keeps_first_and_last_with_a_custom_mask_char():
    result = masked(["4111111111111111"], "partial", keep_first=6, keep_last=2, mask_char="#")
    assert result == ["411111########11"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("12345", "*2345"), ("1234", "****"), ("12", "**"), ("", "")],
)
def test_partial_masks_values_too_short_to_hide_anything_whole(value, expected):
    assert masked([value], "partial") == [expected]


def test_partial_counts_unicode_characters_not_bytes():
    # 12 code points: 9 masked, 3 kept; the emoji is one character, é is not two bytes' worth.
    assert masked(["héllo wörld😀"], "partial", keep_last=3) == ["*" * 9 + "ld😀"]
    assert masked(["日本語テキスト"], "partial", keep_first=1, keep_last=1, mask_char="•") == [
        "日•••••ト"
    ]


def test_partial_with_nothing_kept_masks_everything_but_keeps_length():
    assert masked(["secret"], "partial", keep_last=0) == ["******"]


def test_partial_masks_numbers_in_their_string_form():
    assert masked([1234567, None], "partial", pa.int64(), keep_last=2) == ["*****67", None]


# --- hash ------------------------------------------------------------------------------------


def test_hash_is_salted_sha256_hex_and_keeps_nulls():
    result = masked(["jane@example.com", None, "jane@example.com"], "hash", salt=SALT)
    digest = sha256_hex(SALT + b"jane@example.com")
    assert result == [digest, None, digest]
    assert digest != sha256_hex(b"jane@example.com")


def test_hash_salt_may_be_text_and_changes_every_digest():
    as_text = masked(["a", "b"], "hash", salt=SALT.decode())
    assert as_text == masked(["a", "b"], "hash", salt=SALT)
    other = masked(["a", "b"], "hash", salt=b"another-salt-value")
    assert set(as_text).isdisjoint(other)


def test_hash_digests_numbers_as_their_string_form_and_binary_as_raw_bytes():
    assert masked([42], "hash", pa.int64(), salt=SALT) == [sha256_hex(SALT + b"42")]
    assert masked([b"\xff\x00"], "hash", pa.binary(), salt=SALT) == [sha256_hex(SALT + b"\xff\x00")]


def test_hash_encodes_unicode_as_utf8():
    assert masked(["zoë"], "hash", salt=SALT) == [sha256_hex(SALT + "zoë".encode())]


def test_hash_other_algorithm():
    expected = hashlib.sha512(SALT + b"x").hexdigest()
    assert masked(["x"], "hash", salt=SALT, algorithm="sha512") == [expected]


def test_hash_is_consistent_across_chunks():
    values = pa.chunked_array([["a", "b"], ["b", None, "a"]])
    result = mask_array(values, "hash", salt=SALT)
    assert isinstance(result, pa.ChunkedArray)
    a, b = sha256_hex(SALT + b"a"), sha256_hex(SALT + b"b")
    assert result.to_pylist() == [a, b, b, None, a]


# --- pseudonymize ----------------------------------------------------------------------------


def test_pseudonymize_is_hmac_sha256_and_deterministic():
    values = ["jane@example.com", None, "joe@example.com"]
    first = masked(values, "pseudonymize", key=KEY)
    assert first == [hmac_hex(KEY, b"jane@example.com"), None, hmac_hex(KEY, b"joe@example.com")]
    assert masked(values, "pseudonymize", key=KEY) == first


def test_pseudonymize_differs_per_key():
    one = masked(["a", "b"], "pseudonymize", key=KEY)
    two = masked(["a", "b"], "pseudonymize", key=b"a-different-key-of-32-bytes-long")
    assert set(one).isdisjoint(two)


def test_pseudonymize_accepts_keys_longer_than_a_hash_block():
    long_key = bytes(range(100))
    assert masked(["v"], "pseudonymize", key=long_key) == [hmac_hex(long_key, b"v")]


def test_pseudonymize_truncates_to_length():
    assert masked(["v", None], "pseudonymize", key=KEY, length=16) == [
        hmac_hex(KEY, b"v")[:16],
        None,
    ]


# --- bucket ----------------------------------------------------------------------------------

DOLLARS = {"boundaries": [0, 1e3, 1e6, 1e7], "prefix": "$"}


def test_bucket_labels_ranges_in_human_units():
    values = [-5, 0, 999, 1000, 2_500_000, 9_999_999, 10_000_000, 5e9, None]
    assert masked(values, "bucket", **DOLLARS) == [
        "<$0",
        "$0-$1K",
        "$0-$1K",
        "$1K-$1M",
        "$1M-$10M",
        "$1M-$10M",
        "$10M+",
        "$10M+",
        None,
    ]


def test_bucket_lower_bounds_are_inclusive():
    assert masked([9.999, 10, 10.0001, 20], "bucket", boundaries=[10, 20]) == [
        "<10",
        "10-20",
        "10-20",
        "20+",
    ]


def test_bucket_formats_fractions_negatives_and_suffixes():
    options = {"boundaries": [-1500, 0.5, 2500, 1.5e9], "suffix": " EUR"}
    assert masked([-2000, 0, 3000, 2e9], "bucket", **options) == [
        "<-1.5K EUR",
        "-1.5K EUR-0.5 EUR",
        "2.5K EUR-1.5B EUR",
        "1.5B EUR+",
    ]


def test_bucket_explicit_labels():
    options = {"boundaries": [18, 65], "labels": ["minor", "adult", "senior"]}
    assert masked([5, 18, 64, 65, None], "bucket", **options) == [
        "minor",
        "adult",
        "adult",
        "senior",
        None,
    ]


def test_bucket_nan_has_no_range_and_becomes_null():
    assert masked([float("nan"), 1.0], "bucket", boundaries=[0]) == [None, "0+"]


def test_bucket_accepts_ints_decimals_and_all_null_columns():
    assert masked([5], "bucket", pa.int8(), boundaries=[10]) == ["<10"]
    assert masked([decimal.Decimal("10.50")], "bucket", boundaries=[10]) == ["10+"]
    assert masked([None, None], "bucket", pa.null(), boundaries=[10]) == [None, None]


def test_bucket_rejects_text_columns_naming_the_field():
    table = pa.table({"income": ["1000"]})
    rule = MaskRule("income", "bucket", {"boundaries": [0]})
    with pytest.raises(MaskError, match=r"bucket cannot mask field 'income' of type string"):
        mask_table(table, [rule])


# --- email_domain ----------------------------------------------------------------------------


def test_email_domain_keeps_only_the_domain():
    values = ["jane.doe@example.com", None, "ünï@bücher.de", "@example.org"]
    assert masked(values, "email_domain") == [
        "***@example.com",
        None,
        "***@bücher.de",
        "***@example.org",
    ]


@pytest.mark.parametrize("value", ["not an email", "a@b@example.com", ""])
def test_email_domain_hides_malformed_values_entirely(value):
    assert masked([value], "email_domain", mask="<hidden>") == ["<hidden>"]


# --- input shapes and types ------------------------------------------------------------------


def test_dictionary_input_stays_dictionary_encoded():
    values = pa.array(["x@a.com", "y@b.com", None, "x@a.com"]).dictionary_encode()
    result = mask_array(values, "email_domain")
    assert pa.types.is_dictionary(result.type)
    assert result.to_pylist() == ["***@a.com", "***@b.com", None, "***@a.com"]


def test_chunked_dictionary_input_with_different_dictionaries_per_chunk():
    values = pa.chunked_array(
        [pa.array(["a", "b"]).dictionary_encode(), pa.array(["b", None]).dictionary_encode()]
    )
    result = mask_array(values, "pseudonymize", key=KEY)
    a, b = hmac_hex(KEY, b"a"), hmac_hex(KEY, b"b")
    assert result.to_pylist() == [a, b, b, None]


def test_dictionary_of_numbers_can_be_bucketed():
    values = pa.array([5, 50, 5]).dictionary_encode()
    assert mask_array(values, "bucket", boundaries=[10]).to_pylist() == ["<10", "10+", "<10"]


def test_large_string_input_gives_large_string_output():
    values = pa.array(["4111111111111111"], pa.large_string())
    for strategy, options in [("partial", {}), ("hash", {"salt": SALT}), ("redact", {})]:
        assert mask_array(values, strategy, **options).type == pa.large_string()


@pytest.mark.parametrize("strategy", ["partial", "email_domain"])
def test_text_strategies_refuse_binary_columns(strategy):
    with pytest.raises(MaskError, match="binary may not be valid UTF-8"):
        mask_array(pa.array([b"\xff"]), strategy)


def test_columns_without_a_string_form_must_be_redacted_instead():
    with pytest.raises(MaskError, match=r"hash cannot mask values of type list<item: int64>"):
        mask_array(pa.array([[1]]), "hash", salt=SALT)


# --- option validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "options", "message"),
    [
        ("scramble", {}, r"unknown masking strategy 'scramble'; use one of redact, partial"),
        ("partial", {"keep_lst": 3}, r"partial has no option 'keep_lst'; its options are"),
        ("partial", {"keep_last": -1}, r"partial option 'keep_last' must be a whole number"),
        ("partial", {"keep_first": 1.5}, r"partial option 'keep_first' must be a whole number"),
        ("partial", {"mask_char": "**"}, r"partial option 'mask_char' must be exactly one"),
        ("redact", {"replacement": None}, r"redact option 'replacement' must be a string"),
        ("hash", {}, r"hash option 'salt' is required: pass a secret salt"),
        ("hash", {"salt": 123456789}, r"hash option 'salt' must be bytes or str, got int"),
        ("hash", {"salt": b"short"}, r"hash option 'salt' must be at least 8 bytes, got 5"),
        ("hash", {"salt": SALT, "algorithm": "md5"}, r"hash option 'algorithm' must be one of"),
        ("pseudonymize", {}, r"pseudonymize option 'key' is required"),
        ("pseudonymize", {"key": b"x" * 15}, r"option 'key' must be at least 16 bytes, got 15"),
        ("pseudonymize", {"key": KEY, "length": 8}, r"pseudonymize option 'length' must be"),
        ("pseudonymize", {"key": KEY, "length": 65}, r"pseudonymize option 'length' must be"),
        ("bucket", {}, r"bucket option 'boundaries' is required"),
        ("bucket", {"boundaries": []}, r"'boundaries' must be a non-empty list of finite"),
        ("bucket", {"boundaries": [0, float("inf")]}, r"'boundaries' must be a non-empty list"),
        ("bucket", {"boundaries": ["1"]}, r"'boundaries' must be a non-empty list"),
        ("bucket", {"boundaries": [1, 1]}, r"'boundaries' must be strictly increasing"),
        ("bucket", {"boundaries": [2, 1]}, r"'boundaries' must be strictly increasing"),
        ("bucket", {"boundaries": [1], "labels": ["a"]}, r"'labels' needs 2 labels"),
        ("bucket", {"boundaries": [1], "labels": "ab"}, r"'labels' must be a list of strings"),
        (
            "bucket",
            {"boundaries": [1], "labels": ["a", "b"], "prefix": "$"},
            r"'prefix' and 'suffix' only apply to generated labels",
        ),
        ("bucket", {"boundaries": [1000, 1000.0000000001]}, r"too close to label apart"),
        ("email_domain", {"mask": 3}, r"email_domain option 'mask' must be a string"),
    ],
)
def test_bad_options_are_reported_by_name(strategy, options, message):
    with pytest.raises(MaskError, match=message):
        mask_array(pa.array(["x"]), strategy, **options)
    with pytest.raises(MaskError, match=rf"mask rule for 'col': .*{message}"):
        check_rule(MaskRule("col", strategy, options))


def test_check_rule_accepts_every_strategy_with_valid_options():
    options = {
        "redact": {},
        "partial": {"keep_first": 2},
        "hash": {"salt": SALT},
        "pseudonymize": {"key": KEY, "length": 16},
        "bucket": {"boundaries": [0, 10], "labels": ["neg", "low", "high"]},
        "email_domain": {"mask": "x"},
    }
    assert set(options) == set(STRATEGIES)
    for strategy, opts in options.items():
        check_rule(MaskRule("col", strategy, opts))


@pytest.mark.parametrize("column", [SOURCE_COLUMN, OFFSET_COLUMN])
def test_position_columns_cannot_be_masked(column):
    with pytest.raises(MaskError, match="row-position column"):
        check_rule(MaskRule(column, "redact"))


def test_secret_errors_never_show_the_secret():
    with pytest.raises(MaskError) as error:
        check_rule(MaskRule("email", "pseudonymize", {"key": "tooshort-secret"}))
    assert "tooshort-secret" not in str(error.value)


# --- MaskRule --------------------------------------------------------------------------------


def test_rule_repr_hides_salt_and_key_but_shows_other_options():
    rules = [
        MaskRule("email", "hash", {"salt": "s3cr3t-salt-value", "algorithm": "sha512"}),
        MaskRule("email", "pseudonymize", {"key": b"s3cr3t-key-material!", "length": 16}),
    ]
    for rule in rules:
        for text in (repr(rule), str(rule), repr(pickle.loads(pickle.dumps(rule)))):
            assert "s3cr3t" not in text
            assert "HiddenOption('***')" in text
    assert "'algorithm': 'sha512'" in repr(rules[0])
    assert "'length': 16" in repr(rules[1])


def test_misspelt_secret_option_is_hidden_and_rejected():
    rule = MaskRule("email", "hash", {"slat": "s3cr3t-salt-value"})
    assert "s3cr3t" not in repr(rule)
    with pytest.raises(MaskError, match="hash has no option 'slat'"):
        check_rule(rule)


def test_pickled_rule_is_equal_and_masks_the_same():
    rule = MaskRule("email", "pseudonymize", {"key": KEY})
    copy = pickle.loads(pickle.dumps(rule))
    assert copy == rule
    assert hash(copy) == hash(rule)
    table = pa.table({"email": ["a@b.c", None]})
    assert mask_table(table, [copy]).equals(mask_table(table, [rule]))


def test_rule_options_must_be_a_mapping():
    with pytest.raises(MaskError, match="options must be a mapping"):
        MaskRule("email", "hash", ["salt"])  # type: ignore[arg-type]


# --- mask_table ------------------------------------------------------------------------------


@pytest.fixture
def customers() -> pa.Table:
    customer = pa.array(
        [
            {"name": "Jane", "email": "jane@example.com"},
            None,
            {"name": "Joe", "email": None},
        ],
        pa.struct([("name", pa.string()), ("email", pa.string())]),
    )
    return pa.table(
        {
            "id": pa.array([1, 2, 3]),
            "card": ["4111111111111111", "5500000000000004", None],
            "customer": customer,
            "amount": [12.5, 2_000_000.0, None],
        }
    )


def test_mask_table_replaces_columns_in_place(customers):
    rules = [
        MaskRule("card", "partial"),
        MaskRule("amount", "bucket", {"boundaries": [0, 1e3, 1e6], "prefix": "$"}),
    ]
    result = mask_table(customers, rules)
    assert result.column_names == customers.column_names
    assert result.column("card").to_pylist() == ["************1111", "************0004", None]
    assert result.column("amount").to_pylist() == ["$0-$1K", "$1M+", None]
    assert result.column("id").equals(customers.column("id"))
    assert result.column("customer").equals(customers.column("customer"))


def test_mask_table_masks_a_field_inside_a_struct(customers):
    result = mask_table(customers, [MaskRule("customer.email", "email_domain")])
    assert result.column("customer").to_pylist() == [
        {"name": "Jane", "email": "***@example.com"},
        None,
        {"name": "Joe", "email": None},
    ]


def test_mask_table_nested_struct_in_chunked_and_sliced_tables(customers):
    table = pa.concat_tables([customers, customers.slice(1)])
    result = mask_table(table, [MaskRule("customer.name", "redact")])
    names = [c and c["name"] for c in result.column("customer").to_pylist()]
    assert names == ["[REDACTED]", None, "[REDACTED]", None, "[REDACTED]"]


def test_mask_table_keeps_field_metadata_and_nullability():
    schema = pa.schema([pa.field("ssn", pa.string(), nullable=False, metadata={"pii": "yes"})])
    table = pa.table({"ssn": ["123-45-6789"]}, schema=schema)
    result = mask_table(table, [MaskRule("ssn", "partial")])
    assert result.schema.field("ssn") == schema.field("ssn")
    assert result.schema.field("ssn").metadata == {b"pii": b"yes"}
    assert result.column("ssn").to_pylist() == ["*******6789"]


def test_mask_table_prefers_a_column_named_with_dots(customers):
    table = customers.append_column("customer.email", pa.array(["flat@example.com"] * 3))
    result = mask_table(table, [MaskRule("customer.email", "redact")])
    assert result.column("customer.email").to_pylist() == ["[REDACTED]"] * 3
    assert result.column("customer").equals(customers.column("customer"))


def test_mask_table_leaves_position_columns_alone():
    table = with_positions(pa.table({"email": ["a@b.c", "d@e.f"]}), "in.jsonl", [1, 2])
    result = mask_table(table, [MaskRule("email", "redact")])
    assert result.column(SOURCE_COLUMN).equals(table.column(SOURCE_COLUMN))
    assert result.column(OFFSET_COLUMN).equals(table.column(OFFSET_COLUMN))


def test_mask_table_missing_column_lists_available_columns():
    table = with_positions(pa.table({"id": [1], "email": ["a@b.c"]}), "in.jsonl", [1])
    with pytest.raises(MaskError) as error:
        mask_table(table, [MaskRule("emial", "redact")])
    assert str(error.value) == "mask rule field 'emial' not found; available columns: id, email"


def test_mask_table_missing_struct_field_lists_its_fields(customers):
    with pytest.raises(MaskError, match=r"struct 'customer' has no field 'mail'; its fields: name"):
        mask_table(customers, [MaskRule("customer.mail", "redact")])


def test_mask_table_dotted_path_into_a_non_struct_column(customers):
    with pytest.raises(MaskError, match=r"'card' has type string, not struct"):
        mask_table(customers, [MaskRule("card.last4", "redact")])


def test_mask_table_checks_every_rule_before_masking(customers):
    rules = [MaskRule("card", "partial"), MaskRule("card", "hash", {})]
    with pytest.raises(MaskError, match=r"mask rule for 'card': hash option 'salt' is required"):
        mask_table(customers, rules)
