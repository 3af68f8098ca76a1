"""The prepared-folder format written by `klm prepare`, in one place.

- `manifest`: the folder layout and `manifest.json` (format constants,
  `is_prepared_folder`, `prepared_folder_problem`).
- `config`: `PrepareConfig`, the validated settings of `klm prepare`.
- `writer`: `prepare` (sources -> cleaned text -> tokenizer -> shards +
  manifest) and `format_summary`.
- `shards`: the token shard files, `ShardWriter` and `PreparedSplit`.
- `reader`: `load_prepared` / `PreparedData`, with checksum checks.
"""
