"""Exports of trained models to serving, edge and interchange formats."""
