"""Text in: sources, raw lines and binary detection, cleaning, and the clean/tokenize stages.

- `sources`: files, globs, folders and WikiText folders -> `SourceFile`s, and
  the documents of each format (text, HTML, JSONL, CSV/TSV).
- `raw_lines`: the lines of a (gzip) file as bytes, after refusing binary files.
- `cleaning_config`, `cleaner`, `stop_words`, `privacy`: the cleaning steps
  (`CleaningConfig`, `TextCleaner`); `privacy_cases` is their test corpus.
- `clean_and_tokenize`: the streaming stages shared by `klm.data.prepare` and
  `klm.data.load_corpus` (sources per split -> cleaned text files ->
  tokenizer -> token chunks), with `progress` lines on stderr.
"""
