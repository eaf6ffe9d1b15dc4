"""The demo's side-by-side table of each channel's recommendations."""

from __future__ import annotations

from deploy.cli.demo import side_by_side


def test_columns_are_aligned_cut_to_their_width_and_padded_where_a_list_is_short() -> None:
    lines = side_by_side(
        {"fused (default)": ["Heat (1995)", "A title much longer than the width"], "dense": ["Up (2009)"]}, width=12
    )
    assert lines[0] == "    fused (defa… dense       "
    assert lines[1] == " 1. Heat (1995)  Up (2009)   "
    assert lines[2] == " 2. A title muc…             "
    assert len({len(line) for line in lines}) == 1
