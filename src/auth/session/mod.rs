//! Sessions: the sealed cookie codec and its sharding.
