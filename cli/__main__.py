"""`python -m cli`: the same as the `bastion` console script."""

from .main import app

app(prog_name="bastion")
