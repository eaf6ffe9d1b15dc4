from topology.collections import index_for, items_collection, user_key, users_collection


def test_items_collection_is_keyed_by_item_id_with_the_scalars_recall_filters_on() -> None:
    spec = items_collection("x_", dim=64)
    assert spec.name == "x_items"
    assert spec.primary_key == "item_id"
    assert spec.dim == 64
    assert {f.name for f in spec.fields} >= {"creator_id", "created_at_ms", "encoded_at_ms", "model_version"}


def test_users_collection_rows_are_user_slots() -> None:
    spec = users_collection("x_", dim=32)
    assert spec.primary_key == "user_key"
    assert spec.dim == 32
    assert user_key("u42", 0) == "u42#0"
    assert {"user_id", "slot", "model_version"} <= {f.name for f in spec.fields}


def test_index_follows_the_backend() -> None:
    assert index_for("lite").index_type == "FLAT"  # Lite 2.5 has no HNSW
    server = index_for("server")
    assert server.index_type == "HNSW" and dict(server.build_params)["M"] == 16
    assert {index_for(b).metric_type for b in ("lite", "server")} == {"IP"}
