"""Bastion policy service."""
