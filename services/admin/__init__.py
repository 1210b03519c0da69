"""The admin service.

The admin REST API (`/admin/v1`), analytics and the dashboard, on a port of its own, apart from the
public ingress. The only service holding the admin NATS role."""
