//! devcluster: a loopback Kubernetes API server for tests and the quickstart (not built yet).
