"""`repr()` of klm models: class, key sizes and parameter count."""


class ParameterCountRepr:
    """Mixin: printing a model shows its size, e.g. `<KlmCausalLM 12,345,678 params ...>`."""

    def __repr__(self):
        details = []
        backbone = getattr(self, "backbone", None) or self
        for key in ("vocabulary_size", "num_layers", "hidden_dim", "num_heads"):
            value = getattr(backbone, key, None)
            if value is not None:
                details.append(f"{key}={value}")
        count = self.count_params() if self.built else 0
        return f"<{type(self).__name__} {count:,} params {' '.join(details)}>"

    __str__ = __repr__
