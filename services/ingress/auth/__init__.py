"""Who is calling.

Virtual keys (`keys`) and OAuth access tokens (`access_tokens`), a user's team and customer (`owners`),
what a refused credential is logged as (`refused_credentials`) and the OAuth routes forwarded to the
oauth service (`oauth_routes`). Authorization is policy's.

Below: nothing of ingress's. Above: catalog and everything that names a caller.
"""
