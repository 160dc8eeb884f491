//! A `redis-server` child process on a free port. To be written.
