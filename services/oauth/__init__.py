"""Bastion oauth service."""
