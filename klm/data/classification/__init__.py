"""Classification data, in the order it is used: labelled files -> label ids -> batches.

- `labelled_files`: `read_labelled_texts` reads one labelled file
  (`LabelledTexts`: texts, label names, line numbers).
- `label_vocabulary`: `LabelVocabulary`, label names <-> class ids, saved
  with the model.
- `encoded_splits`: `load_classification_data` reads, optionally cleans and
  encodes train/valid/test (`ClassificationData`).
- `batches`: `classification_dataset`, padded token batches with labels in
  `tf.data`.
"""
