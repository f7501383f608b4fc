"""MultiEMO (Shi and Huang, ACL 2023) for multimodal emotion recognition in conversations.

``from multiemo import Recognizer`` gives the recogniser of exported models
(:mod:`multiemo.recognizer`); it is imported on first use, so that ``import multiemo`` stays cheap.
"""

__version__ = "0.1.0"
__all__ = ["Recognizer", "__version__"]


def __getattr__(name: str):
    if name == "Recognizer":
        from multiemo.recognizer import Recognizer
        return Recognizer
    raise AttributeError(f"module 'multiemo' has no attribute {name!r}")
