"""HTTP API: the app factory, middleware, error envelope and one router per resource."""
