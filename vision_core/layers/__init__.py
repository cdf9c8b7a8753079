"""Layers shared by backbones, necks and heads (flavour-agnostic, int8-convertible)."""
