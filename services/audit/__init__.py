"""Bastion audit service."""
