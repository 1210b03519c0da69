"""The model side of ingress (`/v1/...`): the fronts agents speak, one shared pipeline behind them."""
