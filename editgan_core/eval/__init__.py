"""Evaluation: sample quality (KID in the attribute net's feature space) and edit judging."""
