"""Bastion ingress service."""
