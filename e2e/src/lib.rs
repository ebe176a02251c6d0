//! End-to-end tests of elastic-ws live in `tests/`: each starts several of the workspace's
//! binaries (workers, leaders, `ews-queue`, `ews-load`) as real processes on free loopback
//! ports, through `ews-testkit`. This library is empty on purpose.
