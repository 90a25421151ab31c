"""Tables added at run time are remembered per source and join the configured list at the next start."""

from pathlib import Path

import pytest
from pydantic import SecretStr

from cdc.errors import ConfigError
from cdc.settings import SourceSpec
from cdc.table_additions import _remember, remembered, with_remembered


def test_added_tables_join_a_configured_list_once(tmp_path: Path) -> None:
    spec = SourceSpec(SecretStr("postgresql://x"), "shop", ("public.orders",))
    assert with_remembered(spec, tmp_path, "shop") == spec  # nothing added yet
    _remember(tmp_path, "shop", ["public.invoices"])
    _remember(tmp_path, "shop", ["public.invoices", 'sales."Order Items"'])
    assert remembered(tmp_path, "shop") == ["public.invoices", 'sales."Order Items"']
    assert with_remembered(spec, tmp_path, "shop").tables == ("public.orders", "public.invoices", 'sales."Order Items"')
    assert remembered(tmp_path, "other") == []  # per source


def test_a_source_without_a_table_list_captures_every_table_already(tmp_path: Path) -> None:
    _remember(tmp_path, "shop", ["public.invoices"])
    spec = SourceSpec(SecretStr("postgresql://x"), "shop")
    assert with_remembered(spec, tmp_path, "shop").tables == ()


def test_an_unreadable_list_says_which_file(tmp_path: Path) -> None:
    (tmp_path / "added_tables").mkdir()
    (tmp_path / "added_tables" / "shop.json").write_text("{not json")
    with pytest.raises(ConfigError, match="added_tables/shop.json is unreadable"):
        remembered(tmp_path, "shop")
