"""Bastion codemode service."""
