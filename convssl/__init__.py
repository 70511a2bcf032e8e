"""convssl: self-supervised learning for conversational AI."""

__version__ = "0.1.0"
