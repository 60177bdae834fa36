//! End-to-end test support for sealant (the tests arrive with the controller and devcluster).
