"""Bastion executor service."""
