"""`contained_path`: a file named by an index file (a manifest, a shard index) must stay inside its folder.

klm reads files that list other files: a `klm prepare` folder's
`manifest.json` names its shards and tokenizer, a Transformers checkpoint's
`model.safetensors.index.json` names its weight shards. Such an index may
have been edited or crafted; a name that is absolute, goes up with `..`, or
resolves (through a symbolic link) outside the folder is refused, with the
index file and the entry named, before anything reads it.
"""

import os


def contained_path(directory, relative, index_path, what, error_class, folder="folder", allowed_roots=()):
    """`directory/relative`, refusing any path that leaves `directory`.

    Args:
        directory: the folder the index describes.
        relative: the file name the index gives.
        index_path: the index file (named in the error).
        what: what the entry is, for the error (`"the train shard"`).
        error_class: the `KlmError` subclass to raise.
        folder: what the folder is, for the error (`"prepared folder"`).
        allowed_roots: folders outside `directory` that a symbolic link in it
            may resolve into (the `blobs/` folder of a Hugging Face cache,
            whose snapshot folders hold links to it). Lexical escapes
            (absolute paths, `..`) are refused whatever these are.

    Returns:
        The joined path (not resolved).

    Raises:
        error_class: `relative` is not a non-empty string, is absolute,
            contains `..`, or resolves outside `directory` (and `allowed_roots`).

    Example:

    ```python
    contained_path("data/prepared", "train-00000.bin", "data/prepared/manifest.json", "the train shard", DataError)
    ```
    """
    if not isinstance(relative, str) or not relative:
        raise error_class(f"Expected a file name for {what} in {index_path}. Received: {relative!r}")
    parts = relative.replace("\\", "/").split("/")
    path = os.path.join(directory, relative)
    roots = [os.path.realpath(directory)] + [os.path.realpath(root) for root in allowed_roots]
    real_path = os.path.realpath(path)
    inside = any(real_path == root or real_path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)
    if os.path.isabs(relative) or ".." in parts or not inside:
        raise error_class(
            f"Expected {what} in {index_path} to name a file inside the {folder} {directory}; a path that leaves it "
            f"is refused (the file may have been edited or crafted). Received: {relative!r}"
        )
    return path


def hugging_face_cache_blobs(directory):
    """The `blobs/` folder of the Hugging Face cache repo that holds `directory`, or `None`.

    The cache keeps each file once in `models--ORG--NAME/blobs/` and links
    it from `models--ORG--NAME/snapshots/REVISION/`; a snapshot folder given
    as a local checkpoint therefore holds links that resolve outside it.
    """
    real = os.path.realpath(directory)
    snapshots = os.path.dirname(real)
    if os.path.basename(snapshots) != "snapshots":
        return None
    blobs = os.path.join(os.path.dirname(snapshots), "blobs")
    return blobs if os.path.isdir(blobs) else None
