"""Code shared by two or more services.

`libs.common` holds the contracts (messages, subjects, settings) and the plumbing every service uses to
speak them."""
