"""The modes that change what `tools/list` shows and where a meta-tool call goes.

Code Mode (`codemode`) and discovery mode (`discovery`), both answered by the codemode service.

Below: catalog, auth, audit_events, protocol. Above: the handlers.
"""
