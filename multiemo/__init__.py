"""MultiEMO (Shi and Huang, ACL 2023) for multimodal emotion recognition in conversations."""

__version__ = "0.1.0"
