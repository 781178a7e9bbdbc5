"""The ordered key-value family of stores: `KVStore` (all store logic, once) over a `KV`
backend, LMDB (`lmdb_kv`, the only importer of ``lmdb``) or sorted in-memory tables."""
