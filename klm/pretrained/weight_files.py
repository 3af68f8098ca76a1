"""Checks of a Transformers folder's safetensors files before keras-hub reads them.

`check_weight_files(folder, config)` reads only the safetensors headers (a
length, then JSON naming each tensor's dtype, shape and byte range), so it
costs no more than a file listing, and refuses with a `CheckpointError` that
names the file:

- a file that is damaged or truncated (a copy or download cut short): its
  header is unreadable, or it describes more bytes than the file has;
- weights that disagree with `config.json`'s number of layers: fewer layers
  in the files than the config says (keras-hub would fail on the first
  missing weight), or more (keras-hub would load the first layers only and
  silently drop the rest: a different, truncated model).
"""

import json
import os
import re
from pathlib import Path

from klm.errors import CheckpointError


def read_json(path):
    """The JSON file `path` (a `Path`), or a `CheckpointError` naming the checkpoint folder."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"Cannot read {path}: {e}. Received: checkpoint={str(path.parent)!r}") from None


# A header this long is not a real one (real headers are a few MB at most).
MAX_HEADER_BYTES = 256 * 1024 * 1024
LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layer", "num_layers")
# "model.layers.3.self_attn.q_proj.weight", "transformer.h.3.attn.c_attn.weight", "h.3.mlp.c_fc.bias"
_LAYER_NAME = re.compile(r"^(?P<prefix>(?:.*\.)?(?:layers|h|blocks|layer))\.(?P<index>\d+)\.")


def _damaged(path, reason, folder):
    return CheckpointError(
        f"{path} is damaged or truncated ({reason}). Download or copy the checkpoint again. "
        f"Received: checkpoint={str(folder)!r}"
    )


def safetensors_header(path, folder=None):
    """The tensor entries of the safetensors file `path` (`{name: {"dtype", "shape", "data_offsets"}}`).

    Raises:
        CheckpointError: the file is unreadable, its header is not valid, or
            it is shorter than its header says (truncated).
    """
    folder = folder if folder is not None else Path(path).parent
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise _damaged(path, f"{size} bytes, shorter than a safetensors header", folder)
            length = int.from_bytes(head, "little")
            if length > min(size - 8, MAX_HEADER_BYTES):
                raise _damaged(path, f"its header claims {length:,} bytes, the file has {size:,}", folder)
            header = json.loads(f.read(length))
    except OSError as e:
        raise CheckpointError(f"Cannot read {path}: {e}. Received: checkpoint={str(folder)!r}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise _damaged(path, f"its header is not valid JSON: {e}", folder) from None
    if not isinstance(header, dict):
        raise _damaged(path, "its header is not a JSON object", folder)
    tensors = {name: info for name, info in header.items() if name != "__metadata__"}
    end = 0
    for name, info in tensors.items():
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(x, int) for x in offsets)):
            raise _damaged(path, f"the header entry of {name!r} has no valid data_offsets", folder)
        end = max(end, offsets[1])
    expected = 8 + length + end
    if size < expected:
        raise _damaged(path, f"its header describes {expected:,} bytes, the file has {size:,}", folder)
    return tensors


def weight_names(folder):
    """`{weight name: file}` of a Transformers folder (`model.safetensors` or the shards of its index).

    Every file is checked by `safetensors_header` (damaged, truncated).
    """
    folder = Path(folder)
    index_path = folder / "model.safetensors.index.json"
    if index_path.exists():
        files = sorted(set(read_json(index_path)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    names = {}
    for name in files:
        for weight in safetensors_header(folder / name, folder):
            names[weight] = name
    return names


def _layer_count(config):
    for source in (config, config.get("text_config") or {}):
        for key in LAYER_COUNT_KEYS:
            if isinstance(source.get(key), int):
                return key, source[key]
    return None, None


def check_weight_files(folder, config):
    """Refuses damaged/truncated safetensors files and weights that do not match `config.json`'s layer count.

    Args:
        folder: a local Transformers folder (`Path`).
        config: its parsed `config.json`.

    Raises:
        CheckpointError: naming the file and the missing or unused weights.
    """
    folder = Path(folder)
    names = weight_names(folder)
    key, expected = _layer_count(config)
    if key is None:
        return
    layers = {}
    for weight in names:
        match = _LAYER_NAME.match(weight)
        if match:
            layers.setdefault(match["prefix"], {}).setdefault(int(match["index"]), []).append(weight)
    if len(layers) != 1:  # no layers, or several stacks (a vision tower ...): nothing to compare safely
        return
    prefix, by_index = next(iter(layers.items()))
    config_path = folder / "config.json"
    missing = sorted(i for i in range(expected) if i not in by_index)
    if missing:
        where = sorted(set(names.values()))
        raise CheckpointError(
            f"{config_path} says {key}={expected}, but {', '.join(where)} hold no weights for layer(s) "
            f"{_indices(missing)} (missing: {prefix}.{missing[0]}.*); held layers: {_indices(sorted(by_index))}. "
            f"Fix {key} in config.json or copy the complete weights. Received: checkpoint={str(folder)!r}"
        )
    extra = sorted(i for i in by_index if i >= expected)
    if extra:
        unused = [weight for i in extra for weight in sorted(by_index[i])]
        shown = ", ".join(unused[:3]) + (f" and {len(unused) - 3} more" if len(unused) > 3 else "")
        where = sorted({names[weight] for weight in unused})
        raise CheckpointError(
            f"{config_path} says {key}={expected}, but {', '.join(where)} also hold layer(s) {_indices(extra)}: "
            f"{len(unused)} weights would be left unused ({shown}), and the model would be a truncated one. "
            f"Fix {key} in config.json (the weights hold {max(by_index) + 1} layers). "
            f"Received: checkpoint={str(folder)!r}"
        )


def _indices(values):
    if len(values) > 6:
        return f"{values[0]}-{values[-1]} ({len(values)} layers)"
    return ", ".join(str(v) for v in values)
